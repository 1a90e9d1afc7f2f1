"""A saved notebook as one HTML page that shows our widgets as their static snapshots, offline.

``jupyter nbconvert --to html`` prefers the widget view over every other output when the notebook holds saved
widget state (JupyterLab and ``nbconvert --execute`` save it), and then loads the widget manager from a CDN: offline
the widget area stays empty, and our text/html snapshot is dropped. This converts a copy without the saved widget
state, so each widget output falls back to its snapshot and the page asks no other host for anything.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

from ...errors import QScopeError

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


# nbconvert's page loads require.js and MathJax from cdnjs; our snapshots need neither
_CDN_SCRIPT = re.compile(r'<script[^>]+src="https://cdnjs\.cloudflare\.com/[^"]*"[^>]*>\s*</script>')


def notebook_html(notebook: str | Path, *, offline: bool = True) -> str:
    """The HTML of ``notebook`` (nbconvert's lab template) with widget outputs shown as their static snapshots.

    ``offline=True`` also drops nbconvert's own CDN scripts (require.js, MathJax), so the page asks no other host
    for anything; TeX in markdown cells then shows as its source. ``offline=False`` keeps them.
    """
    import nbformat
    from nbconvert import HTMLExporter

    src = Path(notebook).expanduser()
    if not src.is_file():
        raise QScopeError(f"no notebook at {str(src)!r}")
    try:
        nb = nbformat.read(src, as_version=4)
    except Exception as exc:  # nbformat raises several unrelated types for a file that is not a notebook
        raise QScopeError(f"{str(src)!r} is not a readable notebook: {exc}") from exc
    nb = copy.deepcopy(nb)
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data") or {}
            if WIDGET_VIEW in data and "text/html" in data:
                data.pop(WIDGET_VIEW)  # no view to find without the state: the snapshot is what there is
    body, _ = HTMLExporter(template_name="lab").from_notebook_node(nb)
    return _CDN_SCRIPT.sub("", body) if offline else body


def write_notebook_html(notebook: str | Path, out: str | Path | None = None, *, offline: bool = True) -> Path:
    src = Path(notebook).expanduser()
    target = Path(out).expanduser() if out else src.with_suffix(".html")
    if not target.parent.exists():
        raise QScopeError(f"the folder {str(target.parent)!r} does not exist")
    text = notebook_html(src, offline=offline)
    target.write_text(text, encoding="utf-8")
    return target
