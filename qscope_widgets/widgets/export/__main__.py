"""``python -m qscope_widgets.widgets.export NOTEBOOK.ipynb [-o OUT.html]``: a saved notebook as an offline HTML page
whose widgets show their static snapshots (see :mod:`qscope_widgets.widgets.export.notebook`)."""

from __future__ import annotations

import argparse
import sys

from ...errors import QScopeError
from .notebook import write_notebook_html


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m qscope_widgets.widgets.export", description=__doc__)
    ap.add_argument("notebook")
    ap.add_argument("-o", "--output", help="the HTML file (default: the notebook's name with .html)")
    ap.add_argument("--cdn", action="store_true", help="keep nbconvert's require.js and MathJax from cdnjs")
    args = ap.parse_args(argv)
    try:
        path = write_notebook_html(args.notebook, args.output, offline=not args.cdn)
    except QScopeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path} ({path.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
