"""Static export: widgets as self-contained HTML (``widget.to_html(path)``) and as a no-JavaScript fallback in
their display output, so a saved notebook shows them on GitHub, in nbviewer and through nbconvert.

Widgets layer (it reads widget state); the plain result renderers that core objects use live in
:mod:`qscope_widgets.html`.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from ...errors import QScopeError
from .mixin import StaticExport
from .snapshot import Snapshot, Variant, generic_snapshot

_SNAPSHOTTERS: list[tuple[Callable[[Any], bool], Callable[..., Snapshot]]] = []


def register(accepts: Callable[[Any], bool], snapshotter: Callable[..., Snapshot]) -> None:
    """Give a widget family its own snapshot (e.g. a compare or attribution view that can answer more from saved
    data); the newest registration that accepts a widget wins; the generic snapshot is the fallback."""
    _SNAPSHOTTERS.insert(0, (accepts, snapshotter))


def _builtin(widget: Any) -> Callable[..., Snapshot] | None:
    """A panel view (duck-typed on its ``panels``: this package sits below the view classes that use it)."""
    if getattr(widget, "panels", None) and hasattr(widget, "scope"):
        from .explorer import explorer_snapshot

        return explorer_snapshot
    return None


def snapshot_of(widget: Any, *, strict: bool = True, **options: Any) -> Snapshot:
    """The snapshot of any widget of the package (options: see the widget's ``to_html``; ``strict=False`` lets
    a widget that takes no options ignore them, for pages of several widgets)."""
    for accepts, fn in _SNAPSHOTTERS:
        if accepts(widget):
            return fn(widget, **options)
    fn = _builtin(widget)
    if fn is not None:
        return fn(widget, **options)
    if options and strict:
        raise QScopeError(f"{type(widget).__name__}.to_html takes no options, got {sorted(options)}")
    return generic_snapshot(widget)


def to_html(widgets: Any, path: Any = None, *, title: str | None = None, compress: bool = True,
            **options: Any) -> Any:
    """Several widgets in one page (e.g. an explorer and a dashboard), or one; see ``StaticExport.to_html``."""
    from . import page

    items: Sequence[Any] = widgets if isinstance(widgets, (list, tuple)) else [widgets]
    snaps = [snapshot_of(w, strict=len(items) == 1, **options) for w in items]
    if path is None:
        return page.page(snaps, title, compress=compress)
    return page.write(path, snaps, title, compress=compress)


__all__ = ["StaticExport", "Snapshot", "Variant", "register", "snapshot_of", "to_html"]
