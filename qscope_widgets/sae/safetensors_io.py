"""safetensors files read into memory we own, and written tensor by tensor.

Why not ``safetensors.safe_open``: its tensors are views of a memory map of the file. If that file is rewritten in
place while the tensors are alive (a re-download, ``save_file`` to the same path), touching a page past the new end
of the file kills the process with SIGBUS: in a notebook, a dead kernel. :func:`read_tensors` therefore reads
(``readinto``) straight into freshly allocated tensors, one copy, never a mapping; a file that changes afterwards
cannot affect them.

Why not ``safetensors.torch.save_file``: it needs every tensor in memory at once, in the final dtype and layout.
:class:`StreamWriter` writes a tensor as a sequence of row blocks, so a 3.4 GB fp32 layer becomes a bf16 cache entry
with only one block (a few MB) of conversion in flight.

The format is the standard one (8-byte little-endian header length, JSON header, raw little-endian data), so any
safetensors reader opens what is written here.
"""

from __future__ import annotations

import json
import os
import struct
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

import torch
from torch import Tensor

from ..errors import SAEFormatError

DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}
NAMES = {v: k for k, v in DTYPES.items()}
_BLOCK_BYTES = 64 << 20  # rows converted / copied at a time: bounded extra memory whatever the layer's size
_MAX_HEADER = 100 << 20

if sys.byteorder != "little":  # pragma: no cover - every platform torch ships for is little-endian
    raise ImportError("qscope_widgets' safetensors reader assumes a little-endian machine")


def read_header(f, path: Path) -> tuple[dict[str, Any], dict[str, str], int]:
    """``(tensor table, metadata, offset of the data)``; a clear :class:`SAEFormatError` for anything malformed."""
    size = os.fstat(f.fileno()).st_size
    raw = f.read(8)
    if len(raw) < 8:
        raise SAEFormatError(f"safetensors file {path} is truncated ({size} bytes, no header)")
    (n,) = struct.unpack("<Q", raw)
    if n > min(_MAX_HEADER, size - 8):
        raise SAEFormatError(f"safetensors file {path} is corrupt or truncated: header length {n} for a file of "
                             f"{size} bytes")
    try:
        header = json.loads(f.read(n).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SAEFormatError(f"safetensors file {path} has a corrupt header: {exc}") from None
    if not isinstance(header, dict):
        raise SAEFormatError(f"safetensors file {path} has a corrupt header (not a JSON object)")
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise SAEFormatError(f"safetensors file {path} has corrupt metadata")
    end = 0
    for name, info in header.items():
        try:
            dtype = DTYPES[info["dtype"]]
            shape = [int(s) for s in info["shape"]]
            lo, hi = (int(o) for o in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise SAEFormatError(f"safetensors file {path}: bad entry for tensor {name!r}: {info!r:.200}") from None
        numel = 1
        for s in shape:
            if s < 0:
                raise SAEFormatError(f"safetensors file {path}: negative shape {shape} for {name!r}")
            numel *= s
        if hi - lo != numel * torch.empty((), dtype=dtype).element_size() or lo < 0:
            raise SAEFormatError(f"safetensors file {path}: tensor {name!r} of shape {shape} {info['dtype']} does "
                                 f"not match its byte range {lo}..{hi}")
        end = max(end, hi)
    if 8 + n + end != size:
        raise SAEFormatError(f"safetensors file {path} is truncated or has trailing bytes: the header describes "
                             f"{8 + n + end} bytes, the file has {size}")
    return header, meta, 8 + n


def read_tensors(path: str | os.PathLike, *, device: torch.device | str | None = None,
                 dtypes: dict[str, torch.dtype] | None = None) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Every tensor of a safetensors file, copied into memory this process owns (no memory map), and the metadata.

    ``device``: tensors are filled block by block on that device (a GPU load never holds a whole CPU copy).
    """
    path = Path(path)
    if not path.is_file():
        raise SAEFormatError(f"SAE file not found: {path}")
    try:
        with open(path, "rb") as f:
            header, meta, data_at = read_header(f, path)
            out = {}
            for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
                shape = [int(s) for s in info["shape"]]
                t = torch.empty(shape, dtype=DTYPES[info["dtype"]], device=device or "cpu")
                f.seek(data_at + int(info["data_offsets"][0]))
                _fill(f, t, path)
                out[name] = t
    except OSError as exc:
        raise SAEFormatError(f"could not read {path}: {exc}") from None
    return out, meta


def _fill(f, t: Tensor, path: Path) -> None:
    flat = t.view(-1).view(torch.uint8) if t.numel() else t.view(torch.uint8)
    total = flat.numel()
    if t.device.type == "cpu":
        views = [(0, total)]
        buf = None
    else:
        views = [(i, min(i + _BLOCK_BYTES, total)) for i in range(0, total, _BLOCK_BYTES)]
        buf = torch.empty(min(_BLOCK_BYTES, total), dtype=torch.uint8)
    for lo, hi in views:
        target = flat[lo:hi] if buf is None else buf[: hi - lo]
        mv = memoryview(target.numpy()).cast("B")
        got = 0
        while got < hi - lo:
            n = f.readinto(mv[got:])
            if not n:
                raise SAEFormatError(f"{path} ended early (truncated while being read?)")
            got += n
        if buf is not None:
            flat[lo:hi].copy_(target)


class StreamWriter:
    """Write a safetensors file whose tensors arrive as row blocks, atomically (temp file + rename).

    ``specs``: ``[(name, shape, dtype), ...]`` in file order. Then :meth:`write` each tensor's blocks in order and
    :meth:`commit`. Until commit the destination is untouched; an exception (or a crash) leaves at most a temp file.
    A file is never rewritten in place, which is what makes holding tensors read from it safe for everyone.
    """

    def __init__(self, dest: str | os.PathLike, specs: Iterable[tuple[str, tuple[int, ...], torch.dtype]],
                 metadata: dict[str, str]):
        self.dest = Path(dest)
        self.specs = list(specs)
        header: dict[str, Any] = {}
        off = 0
        for name, shape, dtype in self.specs:
            numel = 1
            for s in shape:
                numel *= int(s)
            nbytes = numel * torch.empty((), dtype=dtype).element_size()
            header[name] = {"dtype": NAMES[dtype], "shape": [int(s) for s in shape], "data_offsets": [off, off + nbytes]}
            off += nbytes
        header["__metadata__"] = metadata
        blob = json.dumps(header, separators=(",", ":")).encode()
        blob += b" " * (-len(blob) % 8)
        self.header = header
        self.dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.dest.parent, prefix=f".{self.dest.name}.", suffix=".tmp")
        self.tmp = Path(tmp)
        self.f = os.fdopen(fd, "wb")
        self.f.write(struct.pack("<Q", len(blob)) + blob)
        self._expected = off
        self._written = 0

    def write(self, block: Tensor) -> None:
        block = block.detach().to("cpu").contiguous()
        self.f.write(memoryview(block.view(-1).view(torch.uint8).numpy()))
        self._written += block.numel() * block.element_size()

    def commit(self) -> Path:
        if self._written != self._expected:
            self.abort()
            raise SAEFormatError(f"internal error writing {self.dest}: wrote {self._written} of {self._expected} bytes")
        self.f.flush()
        os.fsync(self.f.fileno())
        self.f.close()
        os.replace(self.tmp, self.dest)
        return self.dest

    def abort(self) -> None:
        try:
            self.f.close()
        finally:
            self.tmp.unlink(missing_ok=True)


def row_blocks(t: Tensor, dtype: torch.dtype, *, transpose: bool = False) -> Iterator[Tensor]:
    """``t`` (or ``t.T``) converted to ``dtype`` a block of rows at a time, each block a small fresh tensor."""
    src = t.T if transpose else t
    if src.ndim < 2:
        yield src.to(dtype)
        return
    row_bytes = max(1, src[0].numel() * max(src.element_size(), torch.empty((), dtype=dtype).element_size()))
    step = max(1, _BLOCK_BYTES // row_bytes)
    for i in range(0, src.shape[0], step):
        yield src[i:i + step].to(dtype).contiguous()
