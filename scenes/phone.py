"""What the phone pages share (the grid worker's ``/worker``, :mod:`scenes.field`; the volunteers' ``/v``, ``/m``
and ``/worker/tasks``, :mod:`scenes.volunteers`): plain HTML with its styles, script and configuration inline,
common rules and helpers first (``templates/phone.css``, ``phone.js``), and the page another role gets."""

from __future__ import annotations

import gzip
import html
import json
from pathlib import Path

import jinja2
from markupsafe import Markup
from tornado.web import RequestHandler

from scenes.auth import TEMPLATES

PHONE_JS = Path(__file__).with_name("phone.js")
PHONE_CSS = TEMPLATES / "phone.css"


def render_phone_page(template: Path, *, config: dict, script: Path, **values) -> str:
    """``template`` rendered with ``values``, the page's ``config`` (JSON, safe inside a script element), the
    common styles (``phone_css``) and ``script`` after the common helpers (``script``)."""
    text = json.dumps(config, ensure_ascii=False, separators=(",", ":")).replace("</", "<\\/")
    return PAGE_TEMPLATES.get_template(template.name).render(
        config=Markup(text), phone_css=Markup(PHONE_CSS.read_text(encoding="utf-8")),
        script=Markup(PHONE_JS.read_text(encoding="utf-8") + "\n" + script.read_text(encoding="utf-8")), **values)


# Every page template under templates/, loaded once; phone pages extend phone_page.html.
PAGE_TEMPLATES = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True)


def not_this_roles_page(*, title: str, text: str, link: str, link_text: str, css_class: str) -> str:
    """The short page another role gets at a phone page: what it is, and the way to their own."""
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><meta name='viewport' content='width=device-width'>"
            f"<title>{html.escape(title)}</title></head><body style='font-family:sans-serif;padding:1em'>"
            f"<p class='{css_class}'>{html.escape(text)}</p>"
            f"<p><a href='{html.escape(link)}'>{html.escape(link_text)}</a></p></body></html>")


def finish_page(handler: RequestHandler, page: str) -> None:
    """Send a phone page's HTML, never cached (it holds the user's configuration), gzipped when the phone takes it."""
    handler.set_header("Content-Type", "text/html; charset=utf-8")
    handler.set_header("Cache-Control", "no-store")
    body = page.encode("utf-8")
    if "gzip" in handler.request.headers.get("Accept-Encoding", ""):
        body = gzip.compress(body, compresslevel=6)
        handler.set_header("Content-Encoding", "gzip")
    handler.set_header("Vary", "Accept-Encoding")
    handler.finish(body)
