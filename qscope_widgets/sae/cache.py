"""The SAE cache: each release ``.pt`` converted once into a safetensors file in the compute dtype.

Three promises, each pinned by a test:

* **Keyed on content.** The entry's name holds a digest of the source's *content*, not its path or mtime: a
  ``.pt`` replaced by another of the same size and mtime gets a new key and is converted again, never served stale.
  A ``torch.save`` file is a zip whose central directory (the last few KB) records a CRC-32 of every tensor's bytes;
  the key hashes those CRCs with the sizes, so it costs one small read whatever the file's size (a full SHA-256 of a
  3.4 GB layer costs ~3 s here: ``benchmarks/real_shape.py`` prints both). A file that is not a zip (legacy pickle)
  is hashed in full.
* **Checked, and rebuilt when bad.** Each entry carries a SHA-256 of its own header (tensor table + config + source
  key). A missing tensor, a flipped byte in the header, a truncated file or trailing bytes raise
  :class:`~qscope_widgets.errors.SAEFormatError`; the loader reports it as a :class:`SAECacheWarning` and rebuilds
  the entry from the source. (Tensor *data* bytes are not checksummed on every load: that would cost a full pass
  over each layer on every layer switch.)
* **Never rewritten in place.** An entry is written to a temp file and renamed into place, once. Loads copy the
  bytes into memory (see :mod:`.safetensors_io`), so nothing in use ever depends on a file.

The cache holds the SAE in the dtype it will be used in (``bfloat16`` halves the disk and the load time of a
release's ``float32``; ``float32`` stays available): one entry per (source content, dtype).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
import zipfile
from pathlib import Path

import torch
from torch import Tensor

from ..errors import SAEFormatError
from .config import SAEConfig
from .safetensors_io import NAMES, StreamWriter, read_header, read_tensors, row_blocks

CACHE_FORMAT = "qscope-sae-cache-v2"
KEYS = ("W_enc", "W_dec_rows", "b_enc", "b_dec")  # W_dec stored feature-major: one contiguous row per feature


class SAECacheWarning(UserWarning):
    """A cache entry was unusable (its :class:`SAEFormatError` is in the message) and is being rebuilt."""


def default_cache_dir() -> Path:
    """``$QSCOPE_CACHE`` or ``~/.cache/qscope_widgets``."""
    return Path(os.environ.get("QSCOPE_CACHE", Path.home() / ".cache" / "qscope_widgets"))


def content_key(src: Path) -> str:
    """A digest of the file's content: the zip's per-record CRC-32s and sizes, or a full SHA-256 for other files."""
    h = hashlib.sha256()
    try:
        with zipfile.ZipFile(src) as z:
            infos = [i for i in z.infolist() if not i.filename.endswith("serialization_id")]
            for i in sorted(infos, key=lambda i: i.filename.split("/", 1)[-1]):
                h.update(f"{i.filename.split('/', 1)[-1]}|{i.CRC}|{i.file_size}\n".encode())
        return "z" + h.hexdigest()[:24]
    except zipfile.BadZipFile:
        return "s" + full_digest(src)[:24]


def full_digest(src: Path, block: int = 16 << 20) -> str:
    """SHA-256 of every byte of ``src``, streamed (the fallback key, and the figure it is compared with)."""
    h = hashlib.sha256()
    buf = bytearray(block)
    mv = memoryview(buf)
    with open(src, "rb") as f:
        while n := f.readinto(mv):
            h.update(mv[:n])
    return h.hexdigest()


def entry_path(src: Path, key: str, dtype: torch.dtype, cache_dir: Path) -> Path:
    where = hashlib.sha256(str(src.resolve()).encode()).hexdigest()[:8]
    return cache_dir / "saes" / f"{where}-{src.name}.{key}.{NAMES[dtype].lower()}.safetensors"


def _header_digest(table: dict, meta: dict[str, str]) -> str:
    body = {k: v for k, v in meta.items() if k != "digest"}
    return hashlib.sha256(json.dumps([table, body], sort_keys=True).encode()).hexdigest()


def write_entry(dest: Path, state: dict[str, Tensor], cfg: SAEConfig, key: str, dtype: torch.dtype) -> Path:
    """Stream release-layout tensors into ``dest`` in ``dtype`` (block by block), atomically; remove stale siblings.

    ``state``: ``W_enc (d_sae, d_model)``, ``W_dec (d_model, d_sae)``, ``b_enc``, ``b_dec``.
    """
    d_sae, d_model = state["W_enc"].shape
    specs = [("W_enc", (d_sae, d_model), dtype), ("W_dec_rows", (d_sae, d_model), dtype),
             ("b_enc", (d_sae,), dtype), ("b_dec", (d_model,), dtype)]
    if "threshold" in state:
        specs.append(("threshold", (d_sae,), dtype))
    table = {n: {"dtype": NAMES[dt], "shape": list(s)} for n, s, dt in specs}
    meta = {"format": CACHE_FORMAT, "config": cfg.to_json(), "source_key": key}
    meta["digest"] = _header_digest(table, meta)
    w = StreamWriter(dest, specs, meta)
    try:
        for block in row_blocks(state["W_enc"], dtype):
            w.write(block)
        for block in row_blocks(state["W_dec"], dtype, transpose=True):
            w.write(block)
        for name in ("b_enc", "b_dec") + (("threshold",) if "threshold" in state else ()):
            w.write(state[name].to(dtype))
    except BaseException:
        w.abort()
        raise
    out = w.commit()
    prefix, _, rest = dest.name.partition(".")
    suffix = "." + NAMES[dtype].lower() + ".safetensors"
    for old in dest.parent.glob(f"{prefix}.*{suffix}"):  # the same source path, older content
        if old != dest:
            old.unlink(missing_ok=True)
    return out


def read_entry(path: Path, key: str | None = None, *, device=None) -> tuple[dict[str, Tensor], SAEConfig]:
    """A cache entry's tensors (release layout: ``W_dec`` a transposed view of the stored rows) and config.

    Raises :class:`SAEFormatError` for anything short of a complete, self-consistent entry.
    """
    with open(path, "rb") as f:
        header, meta, _ = read_header(f, path)
    if meta.get("format") != CACHE_FORMAT:
        raise SAEFormatError(f"{path} is not a {CACHE_FORMAT} entry (format {meta.get('format')!r})")
    table = {n: {"dtype": i["dtype"], "shape": i["shape"]} for n, i in header.items()}
    if meta.get("digest") != _header_digest(table, meta):
        raise SAEFormatError(f"{path}: header digest mismatch (corrupt metadata or tensor table)")
    missing = [k for k in KEYS if k not in header]
    if missing:
        raise SAEFormatError(f"{path}: tensors {missing} missing")
    if key is not None and meta.get("source_key") != key:
        raise SAEFormatError(f"{path}: made from other content ({meta.get('source_key')} != {key})")
    try:
        cfg = SAEConfig.from_dict(json.loads(meta["config"]))
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise SAEFormatError(f"{path}: bad config in the metadata ({exc})") from None
    tensors, _ = read_tensors(path, device=device)
    tensors["W_dec"] = tensors.pop("W_dec_rows").T
    return tensors, cfg


def report_bad_entry(path: Path, err: SAEFormatError) -> None:
    warnings.warn(SAECacheWarning(f"SAE cache entry {path.name} is unusable and is rebuilt from its source: "
                                  f"SAEFormatError: {err}"), stacklevel=4)
    path.unlink(missing_ok=True)
