"""One feature's dashboard: label, density, activation histogram, top contexts, promoted / suppressed tokens.

The data comes from the scope's feature index (``scope.index(...)`` / ``scope.load_index(...)``, the demo ships
one); with no index covering the layer the dashboard still shows what the weights alone say (the decoder
direction's promoted and suppressed tokens) and says that the corpus statistics are missing. The pin button
puts the feature into the steering sliders of an explorer: the one passed in, else the scope's newest.
"""

from __future__ import annotations

from typing import Any

import anywidget
import traitlets as t

from ..errors import QScopeError
from ..validate import format_feature_url
from .export.mixin import StaticExport
from . import assets
from .scope_widget import ScopeWidget, latest_explorer, live_widgets
from .status import error_text


def feature_data(scope: Any, layer: int, feature: int, *, url: str = "") -> dict[str, Any]:
    """The dashboard's dict: :meth:`FeatureIndex.feature` when an index covers ``layer``, else decoder facts."""
    sae = scope.sae(layer)  # names an unknown layer, or one without an SAE
    feature = sae.check_feature(feature)
    index = getattr(scope, "feature_index", None)
    if index is not None and layer in index.layers:
        data = index.feature(layer, feature)
        data["indexed"] = True
    else:
        from ..index.vocab import vocab_strings
        from ..index.labels import decoder_logit_tokens

        prom, supp = decoder_logit_tokens(scope, layer, vocab_strings(scope), n=10, features=[feature])
        data = {"layer": layer, "feature": feature, "label": "", "explanation": "", "density": None, "count": 0,
                "mean_activation": None, "max_activation": None, "quantiles": {}, "hist": {"edges": [], "counts": []},
                "top_tokens": [], "promoted": prom[0], "suppressed": supp[0], "groups": {}, "contexts": [],
                "indexed": False}
    data["decoder_norm"] = float(sae.decoder_direction(feature).float().norm())
    data["url"] = format_feature_url(url, layer, feature)  # http(s) only: the page opens it
    return data


def describe_view(w: ScopeWidget) -> str:
    """A short name for a view the user can recognise: its class, number and prompt."""
    n = sum(1 for x in live_widgets() if type(x) is type(w) and x._created <= w._created)
    return f"{type(w).__name__} #{n} (prompt {w.prompt[:30]!r})"


class FeatureDashboard(StaticExport, anywidget.AnyWidget):
    """``scope.feature(layer, id)``: everything known about one feature, with a button to steer it."""

    _esm = assets.esm()
    _css = assets.css()
    _view = t.Unicode("feature").tag(sync=True)
    layer = t.Int(0).tag(sync=True)
    feature = t.Int(0).tag(sync=True)
    data = t.Dict().tag(sync=True)
    status = t.Dict().tag(sync=True)

    def __init__(self, scope: Any, layer: int, feature: int, *, explorer: ScopeWidget | None = None,
                 feature_url: str = "", **kwargs: Any):
        data = feature_data(scope, layer, feature, url=feature_url)  # bad ids raise here, before any widget exists
        self.scope, self.explorer, self.feature_url = scope, explorer, feature_url
        super().__init__(layer=layer, feature=int(feature), data=data, status={"busy": False, "error": ""}, **kwargs)
        self.on_msg(self._on_message)

    def __repr__(self) -> str:
        return f"FeatureDashboard(layer={self.layer}, feature={self.feature}, label={self.data.get('label', '')!r})"

    @t.observe("layer", "feature")
    def _reload(self, _change: dict[str, Any]) -> None:
        try:
            self.data = feature_data(self.scope, self.layer, self.feature, url=self.feature_url)
            self.status = {"busy": False, "error": ""}
        except QScopeError as exc:
            self.status = {"busy": False, "error": error_text(exc)}

    def pin_target(self) -> ScopeWidget | None:
        """Where the pin button pins: the explorer passed in, else the newest open view on the same scope that
        has steering sliders (never a standalone heatmap or layer scrubber)."""
        return self.explorer or latest_explorer(self.scope)

    def pin(self) -> dict[str, Any]:
        """Pin this feature into the explorer's steering sliders; returns its row."""
        target = self.pin_target()
        if target is None:
            raise QScopeError("no explorer with steering sliders to pin into: open one with scope.explore(prompt) "
                              "first, or pass explorer=... to scope.feature")
        return target.pin(self.layer, self.feature)

    def _on_message(self, _widget: Any, content: dict[str, Any], _buffers: Any) -> None:
        if content.get("type") != "pin":
            self.status = {"busy": False, "error": f"unknown message from the front end: {content!r}"}
            return
        try:
            self.pin()
            target = self.pin_target()
            self.status = {"busy": False, "error": "", "pinned": True,
                           "message": f"pinned L{self.layer} #{self.feature} into {describe_view(target)}"}
        except QScopeError as exc:
            self.status = {"busy": False, "error": error_text(exc)}

    def contexts_dataframe(self):
        """The top contexts as a DataFrame (rank, activation, text with the activating token in guillemets)."""
        import pandas as pd

        from .features import context_preview

        rows = [{"rank": c["rank"], "activation": c["activation"], "document": c["document"],
                 "position": c["position"], "text": context_preview(c["tokens"], c["center"], width=12)}
                for c in self.data.get("contexts", [])]
        return pd.DataFrame(rows, columns=["rank", "activation", "document", "position", "text"])

    def to_dataframe(self):
        """The dashboard's scalar facts as a one-row DataFrame."""
        import pandas as pd

        d = self.data
        keep = {k: d.get(k) for k in ("layer", "feature", "label", "explanation", "density", "count",
                                      "mean_activation", "max_activation", "decoder_norm")}
        keep.update({f"q{k[1:]}" if k.startswith("q") else k: v for k, v in (d.get("quantiles") or {}).items()})
        keep["promoted"] = d.get("promoted", [])
        keep["suppressed"] = d.get("suppressed", [])
        return pd.DataFrame([keep])
