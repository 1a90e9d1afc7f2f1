"""The known Qwen-Scope releases (``shared/qwen-scope.md``), so a repo id alone is enough to load one.

Each release is a Hugging Face repo with one ``layer{n}.sae.pt`` per layer (0-based) on the residual stream
(``resid_post``), TopK, float32. The licence is Qwen's own ("other"), with a caution against non-scientific use to
interfere with model capabilities; :func:`licence_notice` is shown whenever a release is loaded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Release:
    repo_id: str
    base_model: str
    d_model: int
    d_sae: int
    k: int
    num_layers: int

    @property
    def bytes_per_layer(self) -> int:
        """fp32 bytes of one layer's four tensors."""
        return 4 * (2 * self.d_model * self.d_sae + self.d_sae + self.d_model)

    def file_for_layer(self, layer: int) -> str:
        return f"layer{layer}.sae.pt"


def _r(model: str, width: str, k: int, d_model: int, d_sae: int, n: int, base: str | None = None) -> Release:
    return Release(f"Qwen/SAE-Res-{model}-{width}-L0_{k}", base or f"Qwen/{model}", d_model, d_sae, k, n)


RELEASES: dict[str, Release] = {
    r.repo_id: r
    for r in [
        _r("Qwen3-1.7B-Base", "W32K", 50, 2048, 32768, 28),
        _r("Qwen3-1.7B-Base", "W32K", 100, 2048, 32768, 28),
        _r("Qwen3-8B-Base", "W64K", 50, 4096, 65536, 36),
        _r("Qwen3-8B-Base", "W64K", 100, 4096, 65536, 36),
        _r("Qwen3-30B-A3B-Base", "W32K", 50, 2048, 32768, 48),
        _r("Qwen3-30B-A3B-Base", "W128K", 100, 2048, 131072, 48),
        _r("Qwen3.5-2B-Base", "W32K", 50, 2048, 32768, 24),
        _r("Qwen3.5-2B-Base", "W32K", 100, 2048, 32768, 24),
        _r("Qwen3.5-9B-Base", "W64K", 50, 4096, 65536, 32),
        _r("Qwen3.5-9B-Base", "W64K", 100, 4096, 65536, 32),
        _r("Qwen3.5-27B", "W80K", 50, 5120, 81920, 64),
        _r("Qwen3.5-27B", "W80K", 100, 5120, 81920, 64),
        _r("Qwen3.5-35B-A3B-Base", "W32K", 50, 2048, 32768, 40),
        _r("Qwen3.5-35B-A3B-Base", "W128K", 100, 2048, 131072, 40),
    ]
}

_REPO_RE = re.compile(r"^Qwen/SAE-Res-.+-W\d+K-L0_(\d+)$")


def lookup(repo_id: str) -> Release | None:
    return RELEASES.get(repo_id)


def k_from_repo_id(repo_id: str) -> int | None:
    """``...-L0_100`` -> 100, for releases newer than this registry."""
    m = _REPO_RE.match(repo_id)
    return int(m.group(1)) if m else None


def looks_like_release(repo_id: str) -> bool:
    return repo_id in RELEASES or bool(_REPO_RE.match(repo_id))


def licence_notice(repo_id: str) -> str:
    return (f"{repo_id} is distributed under the Qwen licence (see LICENSE in the repo), which cautions against "
            "non-scientific use to interfere with model capabilities.")


def list_releases():
    """The registry as a DataFrame."""
    import pandas as pd

    rows = [dict(r.__dict__, gb_per_layer=round(r.bytes_per_layer / 1e9, 2)) for r in RELEASES.values()]
    return pd.DataFrame(rows)
