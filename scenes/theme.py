"""The dark wall-display look shared by every screen."""

BACKGROUND = "#0f1724"
PANEL = "#16213a"
TEXT = "#e6edf7"
MUTED = "#8fa3bf"
ACCENT = "#38bdf8"
PARTY_RED = "#dc2626"  # the party layer's marks and outlines
# Fonts with CJK that street offices' machines have (Windows, macOS, Debian/Ubuntu), nothing downloaded.
FONT_STACK = '"Microsoft YaHei", "PingFang SC", "Noto Sans CJK SC", "WenQuanYi Zen Hei", sans-serif'

CSS = f"""
body, .bk-root {{ background: {BACKGROUND}; color: {TEXT}; font-family: {FONT_STACK}; }}
:host {{ font-family: {FONT_STACK}; }}
.twin-card {{ background: {PANEL}; border-radius: 6px; padding: 8px 12px; }}
.twin-figure .value {{ font-size: 26px; font-weight: 600; color: {TEXT}; }}
.twin-figure .label {{ font-size: 12px; color: {MUTED}; text-transform: uppercase; letter-spacing: .05em; }}
.twin-title {{ font-size: 20px; font-weight: 600; color: {TEXT}; }}
.twin-muted {{ color: {MUTED}; }}
.twin-table {{ width: 100%; border-collapse: collapse; font-size: 12px; color: {TEXT}; }}
.twin-table th {{ text-align: left; color: {MUTED}; font-weight: 500; border-bottom: 1px solid {PANEL}; }}
.twin-table td {{ padding: 2px 4px; border-bottom: 1px solid {PANEL}; }}
/* Long codes (ID numbers, phones) may break anywhere: the residents' table never grows past its panel. */
.twin-table td.twin-wrap {{ overflow-wrap: anywhere; }}
.twin-table tr.twin-group td {{ background: {PANEL}; color: {ACCENT}; font-weight: 600; }}
.twin-photo {{ max-width: 110px; max-height: 80px; margin: 2px; border: 1px solid {ACCENT}; }}
.twin-cameras {{ font-size: 12px; color: {TEXT}; }}
.twin-user {{ font-size: 12px; color: {MUTED}; padding-top: 14px; display: flex; justify-content: flex-end;
              white-space: nowrap; }}
.twin-user-name {{ overflow: hidden; text-overflow: ellipsis; min-width: 0; }}  /* a long name, cut; sign out stays */
.twin-user a, .twin-card a {{ color: {ACCENT}; }}
.twin-ok {{ color: #4ade80; }}
.twin-overdue {{ color: #f87171; font-weight: 600; }}
.twin-case-overdue {{ border-left: 4px solid #f87171; }}
.twin-overdue-banner {{ padding: 4px 0; }}
.twin-table td.num {{ text-align: right; }}
.twin-alert {{ color: #f87171; font-weight: 600; }}
.twin-table tr.twin-refused td {{ color: #f87171; }}  /* a refused access: its own kind, seen at a glance */
.twin-secret code {{ font-size: 16px; color: {ACCENT}; user-select: all; overflow-wrap: anywhere; }}
.twin-figure-pair {{ display: flex; gap: 12px; }}
.twin-figure-half {{ flex: 1 1 0; min-width: 0; }}
.twin-figure-half.twin-mine .value {{ color: {ACCENT}; }}
.twin-figure-scope, .twin-figure-note {{ font-size: 12px; color: {MUTED}; }}
.twin-unmasked-row {{ font-size: 12px; color: {ACCENT}; padding: 2px 0; }}
.twin-party {{ padding-left: 16px; margin: 4px 0; }}
.twin-party-org.twin-picked {{ border-left: 3px solid {PARTY_RED}; padding-left: 6px; margin-left: -9px; }}
.twin-party-figures {{ font-size: 12px; }}
"""

# For the whole page (Panel's and Bokeh's own widgets read the variable), given to pn.extension(global_css=...).
PAGE_CSS = f":root {{ --bokeh-base-font: {FONT_STACK}; }} body {{ font-family: {FONT_STACK}; }}"

# Tabs (the admin's) on the dark page: Bokeh's own active tab is light grey on white.
TABS_CSS = (f".bk-tab {{ color: {MUTED}; }} .bk-tab.bk-active {{ color: {TEXT}; background-color: {PANEL}; "
            f"border-color: {ACCENT}; }}")
