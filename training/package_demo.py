"""Copy the trained demo into the package (``qscope_widgets/demo/``), in half precision to fit the size budget.

    python -m training.package_demo
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from .build_corpus import CORPUS, SOURCES, WORK

DEMO = Path(__file__).resolve().parents[1] / "qscope_widgets" / "demo"


def main(model_dir: Path = WORK / "model", sae_dir: Path = WORK / "saes", index_dir: Path = WORK / "index",
         report: Path = WORK / "report.json") -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from qscope_widgets.sae.io import load_sae, save_qwen_scope_layer

    for sub in ("model", "saes", "index"):
        shutil.rmtree(DEMO / sub, ignore_errors=True)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.to(torch.float16).save_pretrained(DEMO / "model")
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(DEMO / "model")
    (DEMO / "saes").mkdir(parents=True)
    cfg = json.loads((sae_dir / "config.json").read_text())
    for p in sorted(sae_dir.glob("layer*.sae.pt")):
        sae = load_sae(p, k=cfg["k"], cache_dir=False)
        save_qwen_scope_layer(sae, DEMO / "saes" / p.name, dtype=torch.float16)
    cfg["dtype"] = "float16"
    (DEMO / "saes" / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    shutil.copytree(index_dir, DEMO / "index", ignore=shutil.ignore_patterns("_build_state.pt"))
    recompress_index(DEMO / "index")
    for metrics in (model_dir / "metrics.json", report):
        if metrics.is_file():
            shutil.copy(metrics, DEMO / metrics.name)
    # a small held-out sample ships too, so tests re-measure the figures without the corpus
    from .build_corpus import load

    with open(DEMO / "heldout_sample.jsonl", "w") as f:
        for genre in SOURCES:
            for d in load("heldout", genres=(genre,))[:12]:
                f.write(json.dumps(d) + "\n")
    stats = json.loads((CORPUS / "stats.json").read_text())
    (DEMO / "corpus_stats.json").write_text(json.dumps({"sources": SOURCES, "stats": stats}, indent=2) + "\n")
    total = sum(f.stat().st_size for f in DEMO.rglob("*") if f.is_file())
    print(f"demo packaged: {total / 2**20:.1f} MiB in {DEMO}")


def recompress_index(root: Path) -> None:
    """The same tables, recompressed (zstd level 19, one row group, floats byte-stream-split): ~40% smaller than the
    index's default, read the same way (the build stamp in each file's metadata is kept)."""
    import pyarrow.parquet as pq

    floats = {"activation": "BYTE_STREAM_SPLIT", "acts.list.element": "BYTE_STREAM_SPLIT"}
    for f in sorted(Path(root).rglob("*.parquet")):
        table = pq.read_table(f)
        kw = dict(column_encoding=floats, use_dictionary=["kind"]) if f.name == "contexts.parquet" and \
            "token_ids" in table.column_names else {}
        pq.write_table(table, f, compression="zstd", compression_level=19, row_group_size=1 << 20, **kw)


if __name__ == "__main__":
    main()
