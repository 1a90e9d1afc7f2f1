"""The index's folder on disk: its layout, crash-safe writes, and the checks that a folder holds one whole build.

Layout (one folder the user names)::

    meta.json                     written last: its presence means "a finished index" (format, model, layers,
                                  d_sae per layer, tokens, corpus report, groups, settings, build_id, ...)
    layer{n}/features.parquet     one row per feature (see reader.py)
    layer{n}/contexts.parquet     top-N and sampled contexts, sorted by feature, kind, rank
    vocab.parquet                 the readable string of every token id (row i = id i): context windows are
                                  stored as token ids and read back as strings through it
    _build_state.pt               only while a build is unfinished: the checkpoint a resume starts from
    _shards/                      only for sharded builds: per-shard checkpoints and finished shard states

Why each rule:

* Every file is written to a temporary name in the same folder and renamed into place (``os.replace`` is atomic
  on POSIX and Windows), so a process killed mid-write leaves the previous file or the new one, never half of one.
* Each layer's parquet files carry the ``build_id`` (a hash of the settings, the corpus checksum, the model and the
  SAE release) in their schema metadata, and ``meta.json`` carries it too: a folder that mixes files of two builds
  (a rebuild killed midway, files copied by hand) is refused on load instead of being read as one index.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, Callable

from ..errors import FeatureIndexError

FORMAT = "qscope-feature-index-v1"
META_FILE = "meta.json"
STATE_FILE = "_build_state.pt"
SHARD_DIR = "_shards"
LAYER_FILES = ("features.parquet", "contexts.parquet")
LABEL_SCORES = "label_scores.parquet"  # optional per layer: scored labels (index/labels.py)
VOCAB_FILE = "vocab.parquet"  # token id -> readable string (indexes written before samples have none)
BUILD_KEY = b"qscope.build_id"
_LAYER_DIR = re.compile(r"^layer(\d+)$")


def layer_dir(root: Path, layer: int) -> Path:
    return Path(root) / f"layer{int(layer)}"


def build_id(settings: dict[str, Any], corpus_digest: str, model: str, sae_release: Any) -> str:
    """The identity of one build: equal ids mean the same settings, corpus, model and SAEs."""
    blob = json.dumps({"settings": settings, "corpus": corpus_digest, "model": str(model),
                       "sae_release": str(sae_release)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


# ---------------------------------------------------------------------------------------------- atomic writes
def atomic_write(path: str | os.PathLike, write: Callable[[Any], None]) -> None:
    """``write(fh)`` into a temporary file beside ``path``, flushed to disk, then renamed over ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: str | os.PathLike, data: Any) -> None:
    atomic_write(path, lambda fh: fh.write(json.dumps(data, indent=2).encode()))


def write_table(path: str | os.PathLike, table: Any, build: str | None, **kwargs: Any) -> None:
    """Write a pyarrow table as parquet, atomically, stamped with ``build`` in its schema metadata."""
    import pyarrow.parquet as pq

    if build is not None:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), BUILD_KEY: build.encode()})
    atomic_write(path, lambda fh: pq.write_table(table, fh, **kwargs))


def torch_save(path: str | os.PathLike, obj: Any) -> None:
    import torch

    atomic_write(path, lambda fh: torch.save(obj, fh))


# ---------------------------------------------------------------------------------------------- reading / checks
def read_meta(root: str | os.PathLike) -> dict[str, Any]:
    """``meta.json`` of a finished index, checked; a clear error for a missing, damaged or foreign file."""
    p = Path(root)
    meta_path = p / META_FILE
    if not meta_path.is_file():
        hint = (" (it holds parts of an unfinished build: run the same scope.index(...) call again to resume or "
                "finish it, or pass resume=False to start over)"
                if ((p / STATE_FILE).is_file() or (p / SHARD_DIR).is_dir() or layer_dirs(p)
                    or any(p.glob(f".{STATE_FILE}.tmp*"))) else "")
        raise FeatureIndexError(f"{p} is not a feature index (no {META_FILE}){hint}; build one with "
                                "scope.index(corpus, out_dir=...)")
    try:
        meta = json.loads(meta_path.read_bytes().decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise FeatureIndexError(f"{meta_path} is damaged (not valid JSON: {exc}); rebuild the index with "
                                "overwrite=True") from None
    if not isinstance(meta, dict):
        raise FeatureIndexError(f"{meta_path} holds a {type(meta).__name__}, not an index description; rebuild "
                                "the index with overwrite=True")
    if meta.get("format") != FORMAT:
        raise FeatureIndexError(f"{p}: unknown index format {meta.get('format')!r}, expected {FORMAT}")
    layers = meta.get("layers")
    if (not isinstance(layers, list) or not layers
            or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in layers)):
        raise FeatureIndexError(f"{meta_path}: 'layers' must be a non-empty list of layer numbers, got {layers!r}")
    return meta


def parquet_build(path: Path) -> str | None:
    """The build id stamped in a parquet file (footer only); a clear error when the file is missing or damaged."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not path.is_file():
        raise FeatureIndexError(f"{path} is missing: the index is incomplete (an interrupted build?); rebuild it "
                                "with overwrite=True")
    try:
        md = pq.read_schema(path).metadata or {}
    except (pa.ArrowException, OSError) as exc:
        raise FeatureIndexError(f"{path} is damaged ({exc}); rebuild the index with overwrite=True") from None
    b = md.get(BUILD_KEY)
    return b.decode() if b is not None else None


def check_layers(root: Path, meta: dict[str, Any]) -> None:
    """Every layer ``meta.json`` names has both files, from the same build as ``meta.json`` (and so has the
    vocabulary file, when there is one)."""
    want = meta.get("build_id")
    vocab = Path(root) / VOCAB_FILE
    if vocab.is_file() and want is not None and parquet_build(vocab) != want:
        raise FeatureIndexError(f"{vocab} comes from another build than {Path(root) / META_FILE} ({want}): the "
                                "folder mixes two index builds; rebuild it with overwrite=True")
    for n in meta["layers"]:
        optional = [LABEL_SCORES] if (layer_dir(root, n) / LABEL_SCORES).is_file() else []
        for name in list(LAYER_FILES) + optional:
            path = layer_dir(root, n) / name
            got = parquet_build(path)
            if want is not None and got != want:
                raise FeatureIndexError(
                    f"{path} comes from another build ({got or 'unstamped'}) than {root / META_FILE} ({want}): the "
                    "folder mixes two index builds (a rebuild stopped midway?); rebuild it with overwrite=True")


def layer_dirs(root: Path) -> dict[int, Path]:
    """The ``layer{n}`` folders present under ``root``."""
    if not Path(root).is_dir():
        return {}
    return {int(m.group(1)): d for d in Path(root).iterdir() if d.is_dir() and (m := _LAYER_DIR.match(d.name))}


def remove_layer(d: Path) -> None:
    """Remove an index layer folder: only the files an index writes, then the folder if that left it empty."""
    for f in list(d.iterdir()):
        if f.name in LAYER_FILES or f.name == LABEL_SCORES or (f.name.startswith(".") and ".tmp" in f.name):
            f.unlink(missing_ok=True)
    try:
        d.rmdir()
    except OSError:
        pass  # the user keeps something else there: leave it


def _remove_temps(root: Path, name: str) -> None:
    """Temporary files a killed write left beside ``name`` (never read: see :func:`atomic_write`)."""
    for t in Path(root).glob(f".{name}.tmp*"):
        t.unlink(missing_ok=True)


def clear_index(root: Path, keep_layers: set[int] | None = None) -> None:
    """Make ``root`` hold no finished index: remove ``meta.json`` first, then the layer folders (all of them, or
    those not in ``keep_layers``); the user's other files stay."""
    (Path(root) / META_FILE).unlink(missing_ok=True)
    _remove_temps(root, META_FILE)
    if keep_layers is None:
        (Path(root) / VOCAB_FILE).unlink(missing_ok=True)
    _remove_temps(root, VOCAB_FILE)
    for n, d in layer_dirs(root).items():
        if keep_layers is None or n not in keep_layers:
            remove_layer(d)


def clear_build_state(root: Path) -> None:
    (Path(root) / STATE_FILE).unlink(missing_ok=True)
    _remove_temps(root, STATE_FILE)
    shutil.rmtree(Path(root) / SHARD_DIR, ignore_errors=True)
