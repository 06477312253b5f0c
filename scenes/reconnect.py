"""A page that finds a serving process again: after its websocket is lost, or while the store cannot be reached.

Bokeh does not reconnect a session to another process (the session lives in the one that made it). When the
page's websocket closes (its process was stopped or killed, or the network dropped), the page says so, asks
``/health`` every second through the same address (behind ``twin serve --workers``, nginx sends the asks to a
live process), and reloads itself once a process answers that it can read the store: the reload opens a new
session there, signed in by the same cookie (the workers share its secret, :mod:`scenes.workers`).
"""

from __future__ import annotations

import panel as pn
from bokeh.models import CustomJS

from scenes.i18n import _
from scenes.theme import CSS

HEALTH_PATH = "health"  # relative to the app's page: /health beside /app (scenes.server.HealthHandler)
POLL_MS = 1000

# args: health (the URL, relative to the page), text (what the banner says), poll_ms.
FIND_A_PROCESS_JS = """
if (window.twinReconnecting) return;
window.twinReconnecting = true;  // also read by the browser tests
const banner = document.createElement('div');
banner.className = 'twin-reconnecting';
banner.setAttribute('role', 'status');
banner.textContent = text;
banner.style.cssText = 'position:fixed;top:0;left:0;right:0;z-index:10000;padding:8px 16px;background:#7a4b00;' +
  'color:#fff;font:14px sans-serif;text-align:center';
document.body.appendChild(banner);
const url = new URL(health, window.location.href);
// A page that was reloaded so a moment ago and lost its connection again waits longer: no reload storm when a
// process accepts sessions but drops them at once.
const last = Number(window.sessionStorage.getItem('twinReconnectedAt') || 0);
const first = Date.now() - last < 15000 ? 5 * poll_ms : Math.min(300, poll_ms);
const ask = async () => {
  try {
    const answer = await fetch(url, {cache: 'no-store'});
    if (answer.ok) {
      window.sessionStorage.setItem('twinReconnectedAt', String(Date.now()));
      window.location.reload();
      return;
    }
  } catch (e) { /* no process answers yet */ }
  setTimeout(ask, poll_ms);
};
setTimeout(ask, first);
"""


def find_a_process(text: str) -> CustomJS:
    """The script that shows ``text``, waits until a process can read the store, and reloads the page."""
    return CustomJS(args={"health": HEALTH_PATH, "text": text, "poll_ms": POLL_MS}, code=FIND_A_PROCESS_JS)


def reconnect_when_lost(doc) -> None:
    """Have the session's page find a live process (and reload there) when its websocket is lost."""
    doc.js_on_event("connection_lost", find_a_process(_("The connection to the server was lost: reconnecting…")))


class StoreUnreachable(pn.viewable.Viewer):
    """What a session gets while the store cannot be reached: why, and a page that reloads once it can."""

    def __panel__(self) -> pn.viewable.Viewable:
        message = _("The district's store cannot be reached just now: this page opens by itself once it can.")
        if pn.state.curdoc is not None:
            pn.state.curdoc.js_on_event("document_ready", find_a_process(message))
        return pn.pane.HTML(f"<div class='twin-card twin-unreachable'><p>{message}</p></div>", stylesheets=[CSS])
