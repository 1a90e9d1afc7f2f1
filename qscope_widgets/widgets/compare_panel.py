"""The compare view: two prompts side by side, the features that separate them, and a pin per feature.

The panel is a thin view over :func:`qscope_widgets.contrast.contrast` (the analysis layer): it ranks the
features of the layer in view by how much more they fire on the first prompt than on the second, ships the top
rows with the release app's three steering presets (0.5x / 2x / 10x of the activation difference, from
:func:`~qscope_widgets.contrast.steering_presets`), and colours both prompts' tokens by one contrast feature (the
selected one, else the top row). The contrast and the second prompt's forward are cached per
``(scope, prompts, layer, edits)``, so a click on another row recomputes nothing but two colour strips.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import traitlets as t

from ..errors import PromptError, QScopeError
from ..steering import SteeringEdit
from .panels import PanelInput, panel, register_input
from .owned_cache import OwnedLRU
from .scope_widget import ScopeWidget, WidgetInputError
from .status import error_text
from .view_state import f32, to_numpy

COMPARE_ROWS = 20          # rows of the ranked difference list shipped to the page
PRESETS = ("0.5x", "2x", "10x")
RESULTS = OwnedLRU(8)  # contrasts and second-prompt traces kept per scope


def check_prompt_b(scope: Any, value: Any) -> str:
    """The second prompt must be a string (empty means "nothing to compare yet")."""
    if not isinstance(value, str):
        raise PromptError(f"prompt_b must be a string, got {type(value).__name__} {value!r:.60}")
    return value


class PromptText(t.Unicode):
    """A Unicode trait whose type error is a :class:`WidgetInputError` (a QScopeError) naming the value."""

    def validate(self, obj: Any, value: Any) -> str:
        if not isinstance(value, str):
            raise WidgetInputError(f"{self.name} must be a string, got {type(value).__name__} {value!r:.60}")
        return super().validate(obj, value)


register_input("prompt_b", lambda: PromptText(""), validate=check_prompt_b)


def compare_rows(scope: Any, a: str, b: str, layer: int, n: int = COMPARE_ROWS) -> list[dict[str, Any]]:
    """The head of ``scope.contrast(a, b, layers=[layer])`` as plain rows with the three steering presets."""
    from ..contrast import steering_presets  # analysis layer, imported lazily

    df = RESULTS.get(scope, ("contrast", a, b, layer), lambda: scope.contrast(a, b, layers=[layer]))
    rows = []
    for _, r in df.head(n).iterrows():
        presets = steering_presets(r)
        rows.append({"layer": int(r["layer"]), "feature": int(r["feature"]), "label": str(r["label"] or ""),
                     "rate_a": float(r["rate_a"]), "rate_b": float(r["rate_b"]),
                     "difference": float(r["difference"]),
                     "presets": {name: float(presets[name].strength) for name in PRESETS}})
    return rows


def _activation(trace: Any, layer: int, feature: int) -> np.ndarray:
    return to_numpy(trace.layers[layer].activation_of(feature)).astype(np.float32)


@panel("compare", inputs=("prompt_b", "selected_feature"), depends=("layer", "selected_feature", "prompt_b"),
       outputs={"compare_rows": lambda: t.List(t.Dict()), "compare_feature": lambda: t.Int(-1),
                "tokens_a": lambda: t.List(t.Unicode()), "values_a": lambda: t.Bytes(b""),
                "tokens_b": lambda: t.List(t.Unicode()), "values_b": lambda: t.Bytes(b""),
                "compare_range": lambda: t.List(t.Float(), default_value=[0.0, 1.0])})
def compare_panel(p: PanelInput) -> dict[str, Any]:
    """The ranked difference list of prompt vs prompt_b at the layer in view, and both prompts' tokens coloured
    by the selected contrast feature (else the top row's); steered like the view when it has active edits."""
    a, b, layer = p.traces.request.prompt, p.inputs.get("prompt_b", ""), p.view.layer
    if not isinstance(b, str) or not b.strip():
        return {"compare_rows": [], "compare_feature": -1, "tokens_a": list(p.trace.tokens),
                "values_a": b"", "tokens_b": [], "values_b": b"", "compare_range": [0.0, 1.0]}
    rows = compare_rows(p.scope, a, b, layer)
    feature = p.view.selected_feature if p.view.selected_feature >= 0 else (rows[0]["feature"] if rows else -1)
    edits = p.traces.request.edits
    trace_b = RESULTS.get(p.scope, ("trace", b, layer, edits),
                      lambda: p.scope.run(b, layers=[layer], steering=list(edits) or None))
    if feature >= 0:
        va, vb = _activation(p.trace, layer, feature), _activation(trace_b, layer, feature)
        body = [v[1:] if len(v) > 1 else v for v in (va, vb)]  # the first token is an attention sink
        m = float(max(np.abs(x).max() if x.size else 0.0 for x in body))
        values_a, values_b, rng = f32(va), f32(vb), [0.0, m if m > 0 else 1.0]
    else:
        values_a, values_b, rng = b"", b"", [0.0, 1.0]
    return {"compare_rows": rows, "compare_feature": int(feature), "tokens_a": list(p.trace.tokens),
            "values_a": values_a, "tokens_b": list(trace_b.tokens), "values_b": values_b, "compare_range": rng}


def preset_edit(rows: list[dict[str, Any]], layer: int, feature: int, preset: str):
    """The steering edit of one row's preset (the strengths the page shows, computed here, never taken from it)."""
    if preset not in PRESETS:
        raise QScopeError(f"unknown steering preset {preset!r}; expected one of {PRESETS}")
    for r in rows:
        if (r["layer"], r["feature"]) == (layer, feature):
            return SteeringEdit(layer, feature, r["presets"][preset])
    raise QScopeError(f"feature {feature} of layer {layer} is not in the compare list")


class CompareView(ScopeWidget):
    """Two prompts, the features that separate them at one layer, both coloured by one of them, and a pin per
    feature with the app's steering presets (0.5x / 2x / 10x of the activation difference) into the view's own
    steering sliders."""

    _view = t.Unicode("compare").tag(sync=True)
    panels = ("compare", "steering")

    def __init__(self, scope: Any, prompt: str = "", prompt_b: str = "", **kwargs: Any):
        for name, value in (("prompt", prompt), ("prompt_b", prompt_b)):
            if not isinstance(value, str):
                raise PromptError(f"{name} must be a string, got {type(value).__name__} {value!r:.60}")
        wait = kwargs.pop("wait", True)
        super().__init__(scope, "", wait=False, **kwargs)
        self._ready = False  # both prompts first, then one request (none while the first prompt is empty)
        try:
            self.prompt_b = prompt_b
            self.prompt = prompt
        finally:
            self._ready = True
        if prompt:
            self._request()
            if wait:
                self.wait()  # a bad prompt raises here, naming the problem

    @property
    def rows(self) -> list[dict[str, Any]]:
        """The ranked difference list drawn now (waits for the latest request)."""
        self.wait()
        return list(self.compare_rows)

    def to_dataframe(self):
        """The ranked difference list drawn now, one row per feature (presets as ``steer_*`` columns)."""
        import pandas as pd

        rows = [{k: v for k, v in r.items() if k != "presets"} | {f"steer_{n}": s for n, s in r["presets"].items()}
                for r in self.rows]
        return pd.DataFrame(rows, columns=["layer", "feature", "label", "rate_a", "rate_b", "difference",
                                           *(f"steer_{n}" for n in PRESETS)])

    def pin_preset(self, layer: int, feature: int, preset: str = "2x") -> dict[str, Any]:
        """Pin a row of the difference list into the steering sliders at one of its presets."""
        edit = preset_edit(self.rows, int(layer), int(feature), preset)
        for row in self.edits:
            if (row["layer"], row["feature"]) == (edit.layer, edit.feature):
                self.unpin(edit.layer, edit.feature)  # a new preset replaces the old strength
        return self.pin(edit.layer, edit.feature, edit.strength)

    def _on_message(self, widget: Any, content: dict[str, Any], buffers: Any) -> None:
        if content.get("type") != "pin_preset":
            return super()._on_message(widget, content, buffers)
        try:
            self.pin_preset(int(content["layer"]), int(content["feature"]), str(content.get("preset", "2x")))
        except (QScopeError, KeyError, TypeError, ValueError) as exc:
            self._set_status(error=error_text(exc))
