"""One self-contained HTML file: the bundled static host, the widget CSS and the snapshot, all inline.

Nothing is fetched: no CDN, no font, no image; the page opens from ``file://`` in a browser with no network. The
host is the same view code as the notebook widget (``js/src``), bundled by esbuild as a classic script
(``qscope_widgets/static/static.js``) so that it also runs where module scripts are not allowed to load.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Sequence

from ...errors import QScopeError
from .snapshot import Snapshot

STATIC = Path(__file__).resolve().parents[2] / "static"
HOST_JS = STATIC / "static.js"
WIDGET_CSS = STATIC / "widget.css"
PAGE_CSS = """
body { margin: 0; padding: 12px; background: #fff; }
.qscope-static-note { font: 12px system-ui, -apple-system, "Segoe UI", sans-serif; color: #555; background: #f6f6f6;
  border: 1px solid #ddd; border-radius: 4px; padding: 4px 8px; margin-bottom: 6px; }
.qscope-static-msg { display: block; margin-top: 4px; color: #8a4b00; font-weight: 600; }
.qscope-static-msg[hidden] { display: none; }
.qscope-static-error { color: #c33; font: 13px system-ui, sans-serif; }
"""


def assets() -> tuple[str, str]:
    """(host JS, widget CSS), or a clear error when the front end was never built."""
    if not HOST_JS.exists() or not WIDGET_CSS.exists():
        raise QScopeError(f"the static front end is not built ({HOST_JS} is missing): run `cd js && npm ci && "
                          "npm run build`, or bash scripts/install.sh, or install a released wheel")
    js, css = HOST_JS.read_text(encoding="utf-8"), WIDGET_CSS.read_text(encoding="utf-8")
    if re.search(r"</script", js, re.IGNORECASE) or re.search(r"</style", css, re.IGNORECASE):
        raise QScopeError(f"{HOST_JS.name} or {WIDGET_CSS.name} holds a closing tag and cannot be inlined")
    return js, css


def page(snapshots: Sequence[Snapshot], title: str | None = None, *, compress: bool = True) -> str:
    """The HTML document showing every snapshot, one after the other."""
    if not snapshots:
        raise QScopeError("nothing to save: no snapshot given")
    js, css = assets()
    blocks = []
    for i, snap in enumerate(snapshots):
        kind, text = snap.packed(compress)
        blocks.append(f'<div class="qscope-static-root" data-qscope-static="qscope-data-{i}"></div>\n'
                      f'<script type="{kind}" id="qscope-data-{i}">{text}</script>')
    name = html.escape(title or snapshots[0].title)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n<meta name="viewport" '
            f'content="width=device-width, initial-scale=1">\n<meta name="generator" content="qscope-widgets">\n'
            f'<title>{name}</title>\n<style>{PAGE_CSS}</style>\n<style>{css}</style>\n</head><body>\n'
            + "\n".join(blocks)
            + f'\n<noscript>This page needs JavaScript to draw the saved view.</noscript>\n<script>{js}</script>\n'
              '<script>QScopeStatic.mountAll();</script>\n</body></html>\n')


def write(path: str | Path, snapshots: Sequence[Snapshot], title: str | None = None, *,
          compress: bool = True) -> Path:
    target = Path(path).expanduser()
    if target.is_dir():
        raise QScopeError(f"{str(target)!r} is a directory: give a file name such as {str(target / 'view.html')!r}")
    if not target.parent.exists():
        raise QScopeError(f"the folder {str(target.parent)!r} does not exist")
    text = page(snapshots, title, compress=compress)
    tmp = target.with_name(target.name + ".part")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(target)  # a failed write never leaves half a page under the real name
    return target
