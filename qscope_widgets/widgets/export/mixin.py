"""What every widget of the package gets: ``to_html`` and a static fallback in its display output."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("qscope_widgets.widgets.export")
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


class StaticExport:
    """Mixed into the widget classes (before ``anywidget.AnyWidget``)."""

    def to_html(self, path: str | Path | None = None, *, compress: bool = True, **options: Any) -> Path | str:
        """Save this view as one self-contained HTML file that opens anywhere, with no kernel and no network.

        What works without a kernel keeps working (hover; selecting a token or a feature and switching between
        the saved layers, for the explorer: ``layers=[...]`` chooses them); what needs the model says so. With
        ``path=None`` the HTML text is returned instead of written. ``compress=False`` keeps the data as readable
        JSON (larger).
        """
        from . import page, snapshot_of

        snap = snapshot_of(self, **options)
        if path is None:
            return page.page([snap], compress=compress)
        return page.write(path, [snap], compress=compress)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        bundle = super()._repr_mimebundle_(**kwargs)  # type: ignore[misc]
        # anywidget returns (data, metadata), ipywidgets a bare dict
        data = bundle[0] if isinstance(bundle, tuple) else bundle
        if isinstance(data, dict) and WIDGET_VIEW in data:
            from .fallback import fallback_html

            try:
                data["text/html"] = fallback_html(self)
            except Exception as exc:  # the live widget must display even if its snapshot cannot be drawn
                log.warning("qscope-widgets: no static fallback for %s: %s", type(self).__name__, exc)
        return bundle
