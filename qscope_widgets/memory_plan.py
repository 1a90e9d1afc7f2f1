"""How much of a Qwen-Scope release fits beside its model on one device: :func:`plan`.

Arithmetic only (nothing is loaded): model weights per dtype from the parameter count, SAE bytes per layer per
dtype from the release's shape (``2 * d_model * d_sae + d_sae + d_model`` values), and how many layers a bank holds
in what is left after the model and a working reserve. The same figures decide what each tool needs:

* the explorer's per-layer chart encodes every SAE layer per update: instant when all layers fit, otherwise it
  charts only the resident layers (the bank never loads a whole release);
* the index and ``scope.run(layers=None)`` stream layers through the bank: one layer must fit;
* attribution back-propagates through every layer it attributes at once, so those SAEs are resident together.

Parameter counts: Qwen3.5-27B is counted exactly from its text config (``hidden_size`` 5120, 64 layers,
``intermediate_size`` 17408, 24/4 attention heads of 256, DeltaNet 16 key / 48 value heads of 128, vocabulary
248,320, untied; the config as published, e.g. in THUDM/slime ``scripts/models/qwen3.5-27B.sh``) by instantiating
``Qwen3_5ForCausalLM`` on the meta device: 26.90 B. The others are the sizes their model cards state (Qwen3: 1.7 B,
8.2 B, 30.5 B total / 3.3 B active) or, for Qwen3.5 2B / 9B / 35B-A3B, the nominal size in the name (not verified
against a config here); text weights only, the vision tower is not loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from .errors import QScopeError
from .sae.releases import RELEASES, Release

GB = 10**9

#: text-model parameters (billions) and where the figure comes from
MODEL_PARAMS: dict[str, tuple[float, str]] = {
    "Qwen/Qwen3-1.7B-Base": (1.7, "model card"),
    "Qwen/Qwen3-8B-Base": (8.2, "model card"),
    "Qwen/Qwen3-30B-A3B-Base": (30.5, "model card (3.3 B active)"),
    "Qwen/Qwen3.5-2B-Base": (2.0, "nominal (name)"),
    "Qwen/Qwen3.5-9B-Base": (9.0, "nominal (name)"),
    "Qwen/Qwen3.5-27B": (26.896, "counted from the text config"),
    "Qwen/Qwen3.5-35B-A3B-Base": (35.0, "nominal (name; ~3 B active)"),
}

_DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


def _dtype_name(d: Any) -> str:
    name = str(d).replace("torch.", "") if isinstance(d, torch.dtype) else str(d)
    if name not in _DTYPE_BYTES:
        raise QScopeError(f"unknown dtype {d!r}; use 'float32', 'bfloat16' or 'float16'")
    return name


def _bytes(x: Any, what: str) -> int:
    if isinstance(x, str):
        s = x.strip().upper().replace(" ", "")
        for unit, mult in (("GIB", 2**30), ("GB", GB), ("MIB", 2**20), ("MB", 10**6)):
            if s.endswith(unit):
                try:
                    return int(float(s[: -len(unit)]) * mult)
                except ValueError:
                    break
        raise QScopeError(f"{what} must be bytes or a string like '80GB', got {x!r}")
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not x > 0:
        raise QScopeError(f"{what} must be a positive number of bytes, got {x!r}")
    return int(x * GB) if x < 10_000 else int(x)  # 80 -> 80 GB; 8e10 -> bytes


@dataclass(frozen=True)
class MemoryPlan:
    """What a release needs on one device of ``device_memory`` bytes. Sizes in bytes (``GB`` = 10^9)."""

    release: str
    base_model: str
    num_layers: int
    d_model: int
    d_sae: int
    model_params: float  # billions
    params_source: str
    device_memory: int
    model_dtype: str
    sae_dtype: str
    reserve_bytes: int
    model_bytes: dict[str, int] = field(repr=False)
    sae_layer_bytes: dict[str, int] = field(repr=False)

    @property
    def model_size(self) -> int:
        return self.model_bytes[self.model_dtype]

    @property
    def sae_size(self) -> int:
        return self.sae_layer_bytes[self.sae_dtype]

    @property
    def bank_bytes(self) -> int:
        """What is left for the SAE bank after the model and the reserve (0 if the model does not fit)."""
        return max(0, self.device_memory - self.model_size - self.reserve_bytes)

    @property
    def model_fits(self) -> bool:
        return self.model_size + self.reserve_bytes <= self.device_memory

    @property
    def layers_fit(self) -> int:
        return min(self.num_layers, self.bank_bytes // self.sae_size)

    @property
    def whole_release_bytes(self) -> int:
        return self.num_layers * self.sae_size

    @property
    def explorer_chart(self) -> str:
        if not self.model_fits or self.layers_fit == 0:
            return "does not fit"
        if self.layers_fit >= self.num_layers:
            return f"all {self.num_layers} layers resident"
        return f"resident {self.layers_fit} of {self.num_layers} layers"

    @property
    def index(self) -> str:
        return "streams 1 layer at a time" if self.layers_fit >= 1 else "does not fit"

    @property
    def attribution(self) -> str:
        return f"up to {self.layers_fit} layers per pass" if self.layers_fit >= 1 else "does not fit"

    def sae_cache_bytes(self) -> int:
        """The ``sae_cache_bytes`` to pass to :class:`~qscope_widgets.Scope` for this plan."""
        return self.layers_fit * self.sae_size

    def to_dict(self) -> dict[str, Any]:
        return {
            "release": self.release, "model": self.base_model, "params_B": self.model_params,
            "model_fp32_GB": self.model_bytes["float32"] / GB, "model_bf16_GB": self.model_bytes["bfloat16"] / GB,
            "sae_layer_fp32_GB": self.sae_layer_bytes["float32"] / GB,
            "sae_layer_bf16_GB": self.sae_layer_bytes["bfloat16"] / GB, "layers": self.num_layers,
            "device_GB": self.device_memory / GB, "layers_fit": self.layers_fit if self.model_fits else 0,
            "explorer_chart": self.explorer_chart, "index": self.index, "attribution": self.attribution,
        }

    def to_dataframe(self):
        import pandas as pd

        return pd.DataFrame([self.to_dict()])

    def __str__(self) -> str:
        if not self.model_fits:
            return (f"{self.base_model} in {self.model_dtype} needs {self.model_size / GB:.1f} GB + "
                    f"{self.reserve_bytes / GB:.1f} GB reserve: more than {self.device_memory / GB:.0f} GB")
        return (f"{self.release} on {self.device_memory / GB:.0f} GB: model {self.model_size / GB:.1f} GB "
                f"({self.model_dtype}), SAE layer {self.sae_size / GB:.2f} GB ({self.sae_dtype}), "
                f"{self.layers_fit} of {self.num_layers} layers fit (sae_cache_bytes={self.sae_cache_bytes()})")


def plan(release: str | Release, device_memory: Any = 80, *, model_dtype: Any = "bfloat16",
         sae_dtype: Any = "bfloat16", reserve: Any = None) -> MemoryPlan:
    """The memory plan of one release on one device.

    Args:
        release: a repo id from :data:`~qscope_widgets.sae.releases.RELEASES` (or a :class:`Release`).
        device_memory: bytes, GB as a number (``80``) or a string (``"80GB"``, ``"24GiB"``).
        reserve: bytes kept free for activations, the CUDA context and the allocator; default 2 GB + 5%.
    """
    rel = release if isinstance(release, Release) else RELEASES.get(release)  # type: ignore[arg-type]
    if rel is None:
        raise QScopeError(f"unknown release {release!r}; known: {sorted(RELEASES)}")
    mem = _bytes(device_memory, "device_memory")
    res = int(2 * GB + 0.05 * mem) if reserve is None else _bytes(reserve, "reserve")
    params, source = MODEL_PARAMS.get(rel.base_model, (float("nan"), "unknown"))
    sae_values = 2 * rel.d_model * rel.d_sae + rel.d_sae + rel.d_model
    return MemoryPlan(
        release=rel.repo_id, base_model=rel.base_model, num_layers=rel.num_layers, d_model=rel.d_model,
        d_sae=rel.d_sae, model_params=params, params_source=source, device_memory=mem,
        model_dtype=_dtype_name(model_dtype), sae_dtype=_dtype_name(sae_dtype), reserve_bytes=res,
        model_bytes={k: int(params * 1e9 * b) for k, b in _DTYPE_BYTES.items()},
        sae_layer_bytes={k: sae_values * b for k, b in _DTYPE_BYTES.items()},
    )


def plan_table(device_memories=(24, 40, 80, 141), *, model_dtype: Any = "bfloat16", sae_dtype: Any = "bfloat16"):
    """Every release x device size as one DataFrame: the README's table."""
    import pandas as pd

    rows = []
    for rid in RELEASES:
        base = plan(rid, device_memories[0], model_dtype=model_dtype, sae_dtype=sae_dtype).to_dict()
        row = {k: base[k] for k in ("release", "params_B", "model_bf16_GB", "sae_layer_fp32_GB",
                                    "sae_layer_bf16_GB", "layers")}
        for m in device_memories:
            p = plan(rid, m, model_dtype=model_dtype, sae_dtype=sae_dtype)
            row[f"fit_{m}GB"] = p.layers_fit if p.model_fits else None
        rows.append(row)
    return pd.DataFrame(rows)


def _missing(v: Any) -> bool:
    return v is None or v != v


def markdown_table(device_memories=(24, 40, 80, 141)) -> str:
    """:func:`plan_table` as a markdown table (model and SAEs in bf16)."""
    df = plan_table(device_memories)
    head = ("| release (`Qwen/SAE-Res-...`) | params (B) | model bf16 GB | SAE layer fp32 / bf16 GB | layers | "
            + " | ".join(f"layers fit, {m} GB" for m in device_memories) + " |")
    lines = [head, "|" + "---|" * (5 + len(device_memories))]
    for r in df.itertuples(index=False):
        fits = [("model too big" if _missing(v) else str(int(v))) for v in (getattr(r, f"fit_{m}GB")
                                                                               for m in device_memories)]
        lines.append(f"| {r.release.removeprefix('Qwen/SAE-Res-')} | {r.params_B:g} | {r.model_bf16_GB:.1f} | "
                     f"{r.sae_layer_fp32_GB:.2f} / {r.sae_layer_bf16_GB:.2f} | {r.layers} | " + " | ".join(fits) + " |")
    return "\n".join(lines)


if __name__ == "__main__":  # python -m qscope_widgets.memory_plan
    print(markdown_table())
