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


@dataclass
class CorpusReport:
    """What the scan saw: a plain record, saved beside the index as part of ``meta.json``."""

    documents: int = 0
    empty_skipped: int = 0
    non_utf8_repaired: int = 0
    long_split: int = 0
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
        if self.stopped_at_max_tokens:
            parts.append("stopped at max_tokens")
        return ", ".join(parts)


def iter_documents(corpus: Any, *, text_column: str = "text", split: str = "line") -> Iterator[str | bytes]:
    """Yield raw documents (str or bytes) from any supported corpus."""
    if isinstance(corpus, (str, os.PathLike)) and Path(corpus).is_file():
        raw = Path(corpus).read_bytes()
        sep = b"\n\n" if split == "paragraph" else b"\n"
        yield from raw.split(sep)
        return
    if isinstance(corpus, (str, bytes)):
        yield corpus
        return
    try:  # a datasets.Dataset
        import datasets  # noqa: F401

        if hasattr(corpus, "column_names") and text_column in corpus.column_names:
            for row in corpus:
                yield row[text_column]
            return
    except ImportError:
        pass
    if hasattr(corpus, "tolist") and hasattr(corpus, "index"):  # a pandas Series
        yield from corpus.tolist()
        return
    if isinstance(corpus, Iterable):
        yield from corpus
        return
    raise TypeError(f"cannot read a corpus from {type(corpus).__name__}: pass strings, a Series, a file or a dataset")


def to_text(doc: Any, report: CorpusReport, index: int) -> str | None:
    """Decode one document, or None to skip it (recorded in ``report``)."""
    if doc is None:
        report.empty_skipped += 1
        return None
    if isinstance(doc, bytes):
        try:
            doc = doc.decode("utf-8")
        except UnicodeDecodeError as exc:
            report.non_utf8_repaired += 1
            report.note(f"document {index}: non-UTF-8 byte at offset {exc.start}, replaced with U+FFFD")
            doc = doc.decode("utf-8", errors="replace")
    elif not isinstance(doc, str):
        doc = str(doc)
    if not doc.strip():
        report.empty_skipped += 1
        return None
    return doc


def chunk_documents(tokenizer: Any, corpus: Any, *, chunk_len: int, report: CorpusReport,
                    text_column: str = "text", groups: Iterable[Any] | None = None
                    ) -> Iterator[tuple[int, int, list[int], Any]]:
    """Yield ``(doc_index, start_token, token_ids, group)`` chunks of at most ``chunk_len`` tokens."""
    group_iter = iter(groups) if groups is not None else None
    for i, raw in enumerate(iter_documents(corpus, text_column=text_column)):
        group = next(group_iter) if group_iter is not None else None
        report.documents += 1
        text = to_text(raw, report, i)
        if text is None:
            continue
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if not ids:
            report.empty_skipped += 1
            continue
        if len(ids) > chunk_len:
            report.long_split += 1
        for start in range(0, len(ids), chunk_len):
            yield i, start, ids[start:start + chunk_len], group
