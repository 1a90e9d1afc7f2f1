"""Build the demo corpus from Debian packages we may redistribute text from, offline, deterministically.

Genres (package -> licence):
    bible    bible-kjv-text (read with bible-kjv's ``bible``)   King James Version: public domain
    python   python3.11-doc (``_sources/*.rst.txt``)            Python Software Foundation License 2
    wordnet  wordnet-base (``data.{noun,verb,adj,adv}``)        WordNet 3.0 licence (Princeton, permissive)
    fortune  fortunes (``/usr/share/games/fortunes``)           fortune-mod: BSD-4-Clause; collected quotes

Output: ``training/work/corpus/{genre}.{train,heldout}.jsonl`` with one document per line ``{"genre", "text"}``;
every 50th document of each genre is held out. Sizes are capped per genre so no genre dominates.

    python -m training.build_corpus
    python -m training.build_corpus --python-docs /tmp/py/usr/share/doc/python3.11-doc/html/_sources

The output depends on the packages' versions. The shipped demo was built from python3.11-doc 3.11.2-6+deb12u9;
deb12u8 changes some pages, so its python split differs (1933 training documents instead of 1943, 124,463 held-out
characters instead of 127,439). With another version installed, unpack the pinned one
(``apt-get download python3.11-doc=3.11.2-6+deb12u9 && dpkg-deb -x python3.11-doc_*.deb /tmp/py``) and pass its
``_sources`` folder as ``--python-docs``. The other three genres reproduce from the current bookworm packages.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
from pathlib import Path

WORK = Path(__file__).resolve().parent / "work"
CORPUS = WORK / "corpus"
CAP_CHARS = 2_600_000  # per genre, training split
HELDOUT_EVERY = 50
PYTHON_DOCS = Path("/usr/share/doc/python3.11-doc/html/_sources")

SOURCES = {
    "bible": ("bible-kjv-text + bible-kjv", "public domain (King James Version)"),
    "python": ("python3.11-doc", "Python Software Foundation License Version 2"),
    "wordnet": ("wordnet-base", "WordNet 3.0 license (Princeton University), permissive"),
    "fortune": ("fortunes", "fortune-mod BSD-4-Clause; quotations collected in the package"),
}


def bible_docs() -> list[str]:
    out = subprocess.run(["bible", "-f", "Gen1:1-Rev22:21"], capture_output=True, text=True, check=True).stdout
    verses = []
    for line in out.splitlines():
        m = re.match(r"^\S+\d+:\d+ (.*)$", line)
        if m:
            verses.append(m.group(1).strip())
        elif verses and line.strip():
            verses[-1] += " " + line.strip()
    return [" ".join(verses[i:i + 6]) for i in range(0, len(verses), 6)]


_ROLE = re.compile(r":[a-z:]+:`~?([^`<]*?)(?:\s*<[^>]*>)?`")
_DIRECTIVE = re.compile(r"^\s*\.\. [a-z:-]+::.*$")


def _clean_rst(text: str) -> str:
    lines = []
    for line in text.splitlines():
        if _DIRECTIVE.match(line) or re.match(r"^\s*:[a-z-]+:.*$", line) or re.match(r"^[=\-~^*#\"'`+]{3,}\s*$", line):
            continue
        line = _ROLE.sub(r"\1", line).replace("``", "").replace("**", "")
        lines.append(line.rstrip())
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def python_docs(root: Path = PYTHON_DOCS) -> list[str]:
    docs = []
    for p in sorted(root.rglob("*.rst.txt")):
        if "whatsnew" in p.parts or "c-api" in p.parts:  # changelogs and C API lists are noise for a tiny model
            continue
        text = _clean_rst(p.read_text(errors="replace"))
        paras = [x for x in text.split("\n\n") if len(x.strip()) > 40]
        chunk: list[str] = []
        for para in paras:
            chunk.append(para)
            if sum(map(len, chunk)) > 1200:
                docs.append("\n\n".join(chunk))
                chunk = []
        if chunk:
            docs.append("\n\n".join(chunk))
    return docs


def wordnet_docs() -> list[str]:
    entries = []
    for pos, name in (("noun", "noun"), ("verb", "verb"), ("adj", "adjective"), ("adv", "adverb")):
        for line in Path(f"/usr/share/wordnet/data.{pos}").read_text(errors="replace").splitlines():
            if line.startswith("  ") or "|" not in line:
                continue
            head, gloss = line.split("|", 1)
            f = head.split()
            n_words = int(f[3], 16)
            words = [f[4 + 2 * i].replace("_", " ") for i in range(n_words)]
            words = [re.sub(r"\(.*\)$", "", w) for w in words]
            entries.append(f"{', '.join(words)} ({name}): {gloss.strip()}")
    random.Random(0).shuffle(entries)
    return ["\n".join(entries[i:i + 12]) for i in range(0, len(entries), 12)]


FORTUNE_SKIP = {"ethnic", "men-women"}  # jokes about groups of people have no place in a demo


def fortune_docs() -> list[str]:
    root = Path("/usr/share/games/fortunes")
    docs = []
    for p in sorted(root.iterdir()):
        if p.suffix or p.is_dir() or p.is_symlink() or p.name in FORTUNE_SKIP:
            continue
        for item in p.read_text(errors="replace").split("\n%\n"):
            item = item.strip().strip("%").strip()
            if 20 < len(item) < 1500:
                docs.append(item)
    return docs


def build(python_root: Path = PYTHON_DOCS) -> dict[str, dict[str, int]]:
    CORPUS.mkdir(parents=True, exist_ok=True)
    stats = {}
    for genre, fn in (("bible", bible_docs), ("python", lambda: python_docs(python_root)),
                      ("wordnet", wordnet_docs), ("fortune", fortune_docs)):
        docs = fn()
        random.Random(genre).shuffle(docs)
        held = [d for i, d in enumerate(docs) if i % HELDOUT_EVERY == 0]
        train, total = [], 0
        for i, d in enumerate(docs):
            if i % HELDOUT_EVERY and total < CAP_CHARS:
                train.append(d)
                total += len(d)
        for split, items in (("train", train), ("heldout", held)):
            with open(CORPUS / f"{genre}.{split}.jsonl", "w") as f:
                for d in items:
                    f.write(json.dumps({"genre": genre, "text": d}) + "\n")
        stats[genre] = {"docs_train": len(train), "chars_train": total, "docs_heldout": len(held),
                        "chars_heldout": sum(map(len, held))}
        print(f"{genre:8s} train {len(train):6d} docs {total / 1e6:5.2f} MB   heldout {len(held):5d} docs")
    (CORPUS / "stats.json").write_text(json.dumps(stats, indent=2))
    return stats


def load(split: str, genres=("bible", "python", "wordnet", "fortune")) -> list[dict]:
    out = []
    for g in genres:
        with open(CORPUS / f"{g}.{split}.jsonl") as f:
            out.extend(json.loads(line) for line in f)
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="build the demo corpus under training/work/corpus")
    ap.add_argument("--python-docs", type=Path, default=PYTHON_DOCS,
                    help="the python3.11-doc _sources folder (the demo pins 3.11.2-6+deb12u9; see the docstring)")
    build(ap.parse_args().python_docs)
