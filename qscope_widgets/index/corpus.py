"""Turning whatever a user calls a corpus into token chunks, reporting what was skipped or repaired.

Accepted: a list / iterable of strings or bytes, a pandas Series, a path to a text file (one document per line,
or per blank-line-separated paragraph with ``split="paragraph"``), or a Hugging Face ``datasets`` dataset (its
``text`` column). Empty documents are skipped and counted; bytes that are not UTF-8 are decoded with replacement
and counted; documents longer than one chunk are split into chunks of the model's window, and counted.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from ..errors import QScopeError
from .records import Chunk


@dataclass
class CorpusReport:
    """What the scan saw: a plain record, saved beside the index as part of ``meta.json``."""

    documents: int = 0
    empty_skipped: int = 0
    non_utf8_repaired: int = 0
    long_split: int = 0
    coerced: int = 0  # documents that were neither str nor bytes, read as str(doc)
    chunks: int = 0
    tokens: int = 0
    stopped_at_max_tokens: bool = False
    examples: list[str] = field(default_factory=list)  # a few human-readable notes

    def note(self, msg: str) -> None:
        if len(self.examples) < 10:
            self.examples.append(msg)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        parts = [f"{self.documents} documents", f"{self.tokens} tokens in {self.chunks} chunks"]
        if self.empty_skipped:
            parts.append(f"{self.empty_skipped} empty skipped")
        if self.non_utf8_repaired:
            parts.append(f"{self.non_utf8_repaired} with non-UTF-8 bytes repaired")
        if self.long_split:
            parts.append(f"{self.long_split} long documents split")
        if self.coerced:
            parts.append(f"{self.coerced} non-text documents read as str()")
        if self.stopped_at_max_tokens:
            parts.append("stopped at max_tokens")
        return ", ".join(parts)


def _iter_file(path: Path, split: str, text_column: str) -> Iterator[str | bytes]:
    """Stream a text file (one document per line, or per blank-line-separated paragraph) or a ``.jsonl`` file
    (its ``text_column``), never holding more than one document in memory. Lines stay bytes, so non-UTF-8 bytes
    are decoded (and reported) per document."""
    if path.suffix == ".jsonl":
        import json

        with path.open("rb") as fh:
            for line in fh:
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError:
                    yield line  # reported downstream as whatever text it decodes to
                    continue
                yield row.get(text_column) if isinstance(row, dict) else row
        return
    with path.open("rb") as fh:
        if split != "paragraph":
            for line in fh:
                yield line.rstrip(b"\r\n")
            return
        para: list[bytes] = []
        for line in fh:
            if line.strip():
                para.append(line)
            elif para:
                yield b"".join(para).rstrip(b"\r\n")
                para = []
        if para:
            yield b"".join(para).rstrip(b"\r\n")


def iter_documents(corpus: Any, *, text_column: str = "text", split: str = "line") -> Iterator[str | bytes]:
    """Yield raw documents (str or bytes) from any supported corpus, lazily."""
    if isinstance(corpus, (str, os.PathLike)) and len(str(corpus)) < 4096 and Path(corpus).is_file():
        yield from _iter_file(Path(corpus), split, text_column)
        return
    if isinstance(corpus, (str, bytes)):
        yield corpus
        return
    if hasattr(corpus, "column_names") and hasattr(corpus, "__iter__"):  # a datasets.Dataset / IterableDataset
        names = corpus.column_names
        if names is not None and text_column not in names:
            raise TypeError(f"the dataset has no {text_column!r} column (columns: {names}); pass text_column=...")
        for row in corpus:
            yield row[text_column]
        return
    if hasattr(corpus, "columns") and hasattr(corpus, "iloc"):  # a DataFrame: its text column
        if text_column not in corpus.columns:
            raise TypeError(f"the DataFrame has no {text_column!r} column; pass text_column=...")
        yield from corpus[text_column]
        return
    if hasattr(corpus, "tolist") and hasattr(corpus, "index"):  # a pandas Series
        yield from corpus
        return
    if isinstance(corpus, Iterable):
        yield from corpus
        return
    raise TypeError(f"cannot read a corpus from {type(corpus).__name__}: pass strings, a Series, a file or a dataset")


def to_text(doc: Any, report: CorpusReport, index: int) -> str | None:
    """Decode one document, or None to skip it (recorded in ``report``)."""
    if doc is None:
        report.empty_skipped += 1
        report.note(f"document {index}: None, skipped")
        return None
    if isinstance(doc, bytes):
        try:
            doc = doc.decode("utf-8")
        except UnicodeDecodeError as exc:
            report.non_utf8_repaired += 1
            report.note(f"document {index}: non-UTF-8 byte at offset {exc.start}, replaced with U+FFFD")
            doc = doc.decode("utf-8", errors="replace")
    elif not isinstance(doc, str):
        report.coerced += 1
        report.note(f"document {index}: a {type(doc).__name__}, read as its str()")
        doc = str(doc)
    else:
        try:
            doc.encode("utf-8")
        except UnicodeEncodeError as exc:  # lone surrogates (e.g. from errors="surrogateescape"): not encodable
            report.non_utf8_repaired += 1
            report.note(f"document {index}: unencodable character at offset {exc.start}, replaced with U+FFFD")
            doc = "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in doc)
    if not doc.strip():
        report.empty_skipped += 1
        if len(report.examples) < 10 and report.empty_skipped <= 3:
            report.note(f"document {index}: empty, skipped")
        return None
    return doc


def _text_pieces(text: str, max_chars: int) -> Iterator[str]:
    """Cut a huge document into pieces of at most ~``max_chars`` characters at whitespace, so tokenizing it
    never holds the whole document's tokens at once (token boundaries can differ only at those cuts)."""
    if len(text) <= max_chars:
        yield text
        return
    i = 0
    while i < len(text):
        j = min(i + max_chars, len(text))
        if j < len(text):
            cut = text.rfind(" ", i + max_chars // 2, j)
            j = cut if cut > i else j
        yield text[i:j]
        i = j


_MISSING = object()


def corpus_length(corpus: Any) -> int | None:
    """How many documents ``corpus`` holds when that is known without reading it (lists, Series, DataFrames,
    datasets), else None (files, generators)."""
    if isinstance(corpus, (str, bytes, os.PathLike)):
        return None if not isinstance(corpus, bytes) and _is_file(corpus) else 1
    try:
        return len(corpus)
    except TypeError:
        return None


def is_one_shot(corpus: Any) -> bool:
    """True for an iterator (a generator, ``iter(list)``, a file handle): it can be read only once."""
    return isinstance(corpus, Iterator)


def _is_file(corpus: Any) -> bool:
    return len(str(corpus)) < 4096 and Path(corpus).is_file()


def chunk_documents(tokenizer: Any, corpus: Any, *, chunk_len: int, report: CorpusReport,
                    text_column: str = "text", groups: Iterable[Any] | None = None, split: str = "line",
                    max_chars: int = 1_000_000) -> Iterator[Chunk]:
    """Yield :class:`Chunk` s (document index, start token, token ids, group) of at most ``chunk_len`` tokens.

    ``groups``: one label per document; a corpus with more documents than labels is refused at the first
    document without one."""
    group_iter = iter(groups) if groups is not None else None
    for i, raw in enumerate(iter_documents(corpus, text_column=text_column, split=split)):
        group = None
        if group_iter is not None:
            group = next(group_iter, _MISSING)
            if group is _MISSING:
                raise QScopeError(f"groups has {i} labels but the corpus has more documents (document {i} has no "
                                  "group): give one group per document")
        report.documents += 1
        text = to_text(raw, report, i)
        if text is None:
            continue
        offset = 0
        for piece in _text_pieces(text, max_chars):
            ids = tokenizer(piece, add_special_tokens=False)["input_ids"]
            for start in range(0, len(ids), chunk_len):
                yield Chunk(i, offset + start, ids[start:start + chunk_len], group)
            offset += len(ids)
        if offset == 0:
            report.empty_skipped += 1
            report.note(f"document {i}: no tokens, skipped")
        elif offset > chunk_len:
            report.long_split += 1
            if report.long_split <= 3:
                report.note(f"document {i}: {offset} tokens, split into {-(-offset // chunk_len)} windows")
