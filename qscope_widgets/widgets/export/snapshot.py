"""A widget's synced state as a JSON document the static host (``js/src/static-host.js``) can drive a view from.

Generic over views: any anywidget model of this package becomes a :class:`Snapshot` of its synced traits
(``bytes`` traits as ``{"$bytes": base64}``, which the host turns back into the DataViews ipywidgets would hand a
view). A view that can do more without a kernel adds *variants*: output traits pre-computed for other input
values (the explorer's saved layers, tokens and features), which the host swaps in when the user picks one.
"""

from __future__ import annotations

import base64
import gzip
import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from ...errors import QScopeError

FORMAT = 1
# ipywidgets / anywidget bookkeeping: never part of what a view draws
SKIP_TRAITS = frozenset({"_esm", "_css", "_anywidget_id", "_model_module", "_model_module_version", "_model_name",
                         "_view_module", "_view_module_version", "_view_name", "_view_count", "_dom_classes",
                         "layout", "tabbable", "tooltip", "comm", "keys", "log"})


def encode(value: Any) -> Any:
    """A trait value as JSON-safe data: bytes -> ``{"$bytes": base64}``, non-finite floats -> None."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # numpy / torch scalars
        return encode(value.item())
    raise QScopeError(f"cannot save a trait value of type {type(value).__name__} in a static snapshot: {value!r:.80}")


def synced_state(widget: Any, skip: frozenset[str] = SKIP_TRAITS) -> dict[str, Any]:
    """Every synced trait of ``widget`` but ipywidgets' own bookkeeping, encoded."""
    names = sorted(set(widget.trait_names(sync=lambda x: x)) - skip)
    return {name: encode(getattr(widget, name)) for name in names}


@dataclass(frozen=True)
class Variant:
    """Output traits that hold whenever every input in ``key`` has that value."""

    key: dict[str, Any]
    state: dict[str, Any]


@dataclass(frozen=True)
class Snapshot:
    """What a static page needs to draw one view (fields documented in ``js/src/static-host.js``)."""

    state: dict[str, Any]
    title: str = "qscope-widgets"
    variants: tuple[Variant, ...] = ()
    local: tuple[str, ...] = ()
    resets: dict[str, dict[str, Any]] = field(default_factory=dict)
    seq: tuple[str, ...] = ()
    note: str = ""
    kernel_notes: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "title": self.title, "state": self.state,
                "variants": [{"key": v.key, "state": v.state} for v in self.variants], "local": list(self.local),
                "resets": self.resets, "seq": list(self.seq), "note": self.note, "kernel_notes": self.kernel_notes}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), allow_nan=False, ensure_ascii=False)

    def packed(self, compress: bool = True) -> tuple[str, str]:
        """``(script type, text)`` to embed in a page: gzip + base64 (decompressed by the browser), or JSON with
        ``</`` escaped so the data can never close its ``<script>`` element."""
        text = self.to_json()
        if compress:
            return "application/gzip+base64", base64.b64encode(gzip.compress(text.encode("utf-8"), 9, mtime=0)
                                                               ).decode("ascii")
        return "application/json", text.replace("</", "<\\/")


def generic_snapshot(widget: Any, **_: Any) -> Snapshot:
    """Any widget: its state as saved; every change the user makes needs a kernel (the view says so)."""
    name = type(widget).__name__
    return Snapshot(state=synced_state(widget), title=name,
                    note=f"Saved snapshot of a {name} (no kernel): it shows the state it was saved in.")
