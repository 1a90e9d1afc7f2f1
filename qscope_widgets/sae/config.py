"""The configuration of one sparse autoencoder.

Qwen-Scope pins the tensors but leaves two details of the encoder to the reader (see ``shared/qwen-scope.md``):
whether ``b_dec`` is subtracted from the input before encoding (it is not: ``apply_b_dec_to_input=False``) and
whether a ReLU follows the top-k (the official app: ``topk(relu(pre))``; the model card's snippet keeps raw top-k
values, negatives included). Both are explicit fields here, defaulting to the official app's choice, so a result
can always be traced back to the exact formula that produced it.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import SAEFormatError

Architecture = Literal["topk", "relu", "jumprelu"]
TopKActivation = Literal["relu", "identity"]


@dataclass(frozen=True)
class SAEConfig:
    """Shape and encoding variant of one SAE.

    Attributes:
        d_model: width of the residual stream the SAE reads.
        d_sae: number of features.
        k: active features per token for ``architecture="topk"``.
        architecture: ``"topk"`` (Qwen-Scope), ``"relu"`` or ``"jumprelu"`` (SAELens / Gemma Scope style).
        topk_activation: ``"relu"``: ``z = topk(relu(pre))`` as the official Qwen-Scope app does (default);
            ``"identity"``: raw top-k values as in the model card's snippet (negative codes can survive).
        apply_b_dec_to_input: subtract ``b_dec`` from the input before encoding. Qwen-Scope: ``False``.
        hook_point: where in the model the SAE reads; only ``"resid_post"`` (a decoder layer's output) is wired.
        layer: the decoder layer, 0-based, when known.
        base_model: the model the SAE was trained on, when known.
        release: the release id (e.g. a Hugging Face repo) it came from, when known.
    """

    d_model: int
    d_sae: int
    k: int | None = None
    architecture: Architecture = "topk"
    topk_activation: TopKActivation = "relu"
    apply_b_dec_to_input: bool = False
    hook_point: str = "resid_post"
    layer: int | None = None
    base_model: str | None = None
    release: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        from ..validate import as_int, as_optional_int

        for name in ("d_model", "d_sae"):
            object.__setattr__(self, name, as_int(getattr(self, name), f"SAE {name}", error=SAEFormatError))
        for name in ("k", "layer"):
            if hasattr(self, name):
                object.__setattr__(self, name, as_optional_int(getattr(self, name), f"SAE {name}",
                                                               error=SAEFormatError))
        if self.d_model <= 0 or self.d_sae <= 0:
            raise SAEFormatError(f"SAE sizes must be positive, got d_model={self.d_model}, d_sae={self.d_sae}")
        if self.architecture not in ("topk", "relu", "jumprelu"):
            raise SAEFormatError(f"unknown SAE architecture {self.architecture!r}; expected topk, relu or jumprelu")
        if self.architecture == "topk":
            if self.k is None or not (0 < self.k <= self.d_sae):
                raise SAEFormatError(f"a TopK SAE needs 0 < k <= d_sae={self.d_sae}, got k={self.k}")
        if self.topk_activation not in ("relu", "identity"):
            raise SAEFormatError(f"topk_activation must be 'relu' or 'identity', got {self.topk_activation!r}")

    def replace(self, **changes: Any) -> "SAEConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        extra = d.pop("extra")
        d.update(extra)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SAEConfig":
        """Build from our own dict, a Qwen-Scope ``config.json`` or a SAELens ``cfg.json``."""
        d = dict(d)
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        # SAELens spells d_model "d_in" and the architecture "architecture" or "activation_fn".
        if "d_model" not in d and "d_in" in d:
            d["d_model"] = d.pop("d_in")
        if "architecture" not in d:
            mt = str(d.get("model_type", d.get("activation_fn", "topk"))).lower()
            d["architecture"] = "topk" if "topk" in mt else ("jumprelu" if "jump" in mt else "relu" if mt == "relu" else "topk")
        if "k" not in d and isinstance(d.get("activation_fn_kwargs"), dict):
            d["k"] = d["activation_fn_kwargs"].get("k")
        if d.get("hook_point") is None:
            d.pop("hook_point", None)
        try:
            kwargs = {k: v for k, v in d.items() if k in names}
            extra = {k: v for k, v in d.items() if k not in names}
            return cls(**kwargs, extra=extra)
        except TypeError as exc:
            raise SAEFormatError(f"SAE config is missing a field: {exc}; got keys {sorted(d)}") from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)
