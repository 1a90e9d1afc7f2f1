"""The embedded demo: a tiny Qwen3.5-architecture model, its Qwen-Scope-format SAEs and their feature index.

Trained by ``python -m training.build_demo`` on text we may ship (see ``PROVENANCE.md`` beside this file and
``DEMO_MODEL.md`` at the repository root). Load it with ``qscope_widgets.Scope.demo()``.
"""

from __future__ import annotations

from pathlib import Path

DEMO_DIR = Path(__file__).resolve().parent


def _need(path: Path) -> Path:
    if not path.exists():
        from ..errors import QScopeError

        raise QScopeError(f"the embedded demo is missing {path}: reinstall qscope-widgets, or rebuild it with "
                          "`python -m training.build_demo`")
    return path


def model_dir() -> Path:
    """``save_pretrained`` folder of the model and its tokenizer (AutoModelForCausalLM / AutoTokenizer load it)."""
    return _need(DEMO_DIR / "model")


def sae_dir() -> Path:
    """The SAEs, one ``layer{n}.sae.pt`` per layer plus ``config.json``: the Qwen-Scope release layout."""
    return _need(DEMO_DIR / "saes")


def index_dir() -> Path:
    """The feature index (labels, densities, top contexts per feature) built on the held-out slice."""
    return DEMO_DIR / "index"
