"""Where the bundled front end lives (built from ``js/`` by esbuild at install time; shipped in the wheel)."""

from __future__ import annotations

from pathlib import Path

STATIC = Path(__file__).resolve().parent.parent / "static"
WIDGET_JS = STATIC / "widget.js"
WIDGET_CSS = STATIC / "widget.css"

# Shown instead of a blank cell when the bundle is missing (a clone installed without node): says what to do.
_MISSING_ESM = """
export default { render({ el }) {
  el.innerHTML = '<div class="qscope" style="padding:8px;border:1px solid #c33;color:#c33">' +
    'qscope-widgets: the front end is not built. Run <code>bash scripts/install.sh</code> (needs Node.js/npm), ' +
    'or install a released wheel.</div>';
} };
"""


def esm() -> Path | str:
    return WIDGET_JS if WIDGET_JS.exists() else _MISSING_ESM


def css() -> Path | str:
    return WIDGET_CSS if WIDGET_CSS.exists() else ""
