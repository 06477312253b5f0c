"""The dark wall-display look shared by every screen."""

BACKGROUND = "#0f1724"
PANEL = "#16213a"
TEXT = "#e6edf7"
MUTED = "#8fa3bf"
ACCENT = "#38bdf8"

CSS = f"""
body, .bk-root {{ background: {BACKGROUND}; color: {TEXT}; }}
.twin-card {{ background: {PANEL}; border-radius: 6px; padding: 8px 12px; }}
.twin-figure .value {{ font-size: 26px; font-weight: 600; color: {TEXT}; }}
.twin-figure .label {{ font-size: 12px; color: {MUTED}; text-transform: uppercase; letter-spacing: .05em; }}
.twin-title {{ font-size: 20px; font-weight: 600; color: {TEXT}; }}
"""
