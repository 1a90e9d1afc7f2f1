"""Writing one layer of the index: the per-feature table and the top-contexts table, from a finished
:class:`FeatureAccumulator` (column meanings: :mod:`qscope_widgets.index.reader`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import QScopeError
from .accumulator import FeatureAccumulator
from .files import VOCAB_FILE, layer_dir, write_table
from .labels import auto_labels, decoder_logit_tokens, logit_token_cost

if TYPE_CHECKING:
    import pandas as pd

    from ..scope import Scope

CONTEXT_ROW_GROUP = 4096
CONTEXT_KINDS = ("top", "sample")  # contexts.parquet "kind": the top-N contexts, the uniform sample of firings
LOGIT_BUDGET_FLOPS = {"cpu": 2e12, "cuda": 5e14}


def _logit_tokens_for(scope: "Scope", layer: int, vocab: list[str], count, mode: bool | str
                      ) -> tuple[list[list[str]], list[list[str]]]:
    """Promoted / suppressed tokens per feature at build time, within a compute budget (see build_index)."""
    import numpy as np

    d_sae = len(count)
    promoted: list[list[str]] = [[] for _ in range(d_sae)]
    suppressed: list[list[str]] = [[] for _ in range(d_sae)]
    if mode is False:
        return promoted, suppressed
    feats = np.arange(d_sae) if mode is True else np.flatnonzero(count > 0)
    if mode == "auto":
        dev = scope.model.get_output_embeddings().weight.device.type
        if logit_token_cost(scope, layer, len(feats)) > LOGIT_BUDGET_FLOPS.get(dev, 2e12):
            return promoted, suppressed  # computed per feature on demand by FeatureIndex.feature
    if len(feats):
        prom, supp = decoder_logit_tokens(scope, layer, vocab, features=feats.tolist())
        for f, p_, s_ in zip(feats.tolist(), prom, supp):
            promoted[f], suppressed[f] = p_, s_
    return promoted, suppressed


def write_layer(out: Path, layer: int, acc: FeatureAccumulator, scope: "Scope", vocab: list[str], *,
                logit_tokens: bool | str = "auto", build: str | None = None) -> None:
    """Write ``layer{n}/features.parquet`` and ``contexts.parquet`` from a finished accumulator, each atomically
    and stamped with ``build`` (the build id ``meta.json`` will carry)."""
    import numpy as np
    import pandas as pd

    d = layer_dir(out, layer)
    d.mkdir(parents=True, exist_ok=True)
    if acc.sum_fx.min() < 0 or acc.group_mass_fx.min() < 0:
        raise QScopeError(f"layer {layer}: summed activation overflowed its int64 accumulator; index fewer tokens")
    tokens = max(acc.tokens, 1)
    q = acc.quantiles().numpy()
    count = acc.count.numpy()
    promoted, suppressed = _logit_tokens_for(scope, layer, vocab, count, logit_tokens)
    # contexts: one row per (feature, kind, rank), sorted by feature, then the top contexts (kind "top", rank =
    # activation order) before the sampled ones (kind "sample", rank = activation order within the sample); token
    # windows as list<int32> ids (the reader maps them to strings through vocab.parquet: a third of the bytes of
    # storing the strings too), built without a Python loop per row; small row groups let the reader fetch one
    # feature's rows without the whole layer
    import pyarrow as pa
    vocab_arr = np.asarray(vocab, dtype=object)
    top = _context_rows(acc.top_vals, acc.top_refs, acc.top_tokens, acc.top_acts, by_activation=False)
    parts = [top] + ([_context_rows(acc.sample_vals, acc.sample_refs, acc.sample_tokens, acc.sample_acts,
                                    by_activation=True)] if acc.sample_n else [])
    cols = {k: np.concatenate([part[k] for part in parts]) for k in top}
    kind = np.concatenate([np.full(len(part["feature"]), j, dtype=np.int8) for j, part in enumerate(parts)])
    order = np.lexsort((cols["rank"], kind, cols["feature"]))
    cols, kind = {k: v[order] for k, v in cols.items()}, kind[order]
    tok, acts = cols["tokens"], cols["acts"]  # (M, W), -1 outside the document
    keep = tok >= 0
    offsets = pa.array(np.concatenate([[0], np.cumsum(keep.sum(1))]).astype(np.int32))
    table = pa.table({
        "feature": pa.array(cols["feature"].astype(np.int32)), "rank": pa.array(cols["rank"].astype(np.int16)),
        "activation": pa.array(cols["activation"]),
        "document": pa.array(cols["document"]), "position": pa.array(cols["position"]),
        "acts": pa.ListArray.from_arrays(offsets, pa.array(np.round(acts[keep], 4).astype(np.float32))),
        "center": pa.array((tok[:, : acc.left] >= 0).sum(1).astype(np.int16)),
        "kind": pa.array(np.asarray(CONTEXT_KINDS, dtype=object)[kind].tolist(), type=pa.string()),
        "token_ids": pa.ListArray.from_arrays(offsets, pa.array(tok[keep].astype(np.int32))),
    })
    write_table(d / "contexts.parquet", table, build, row_group_size=CONTEXT_ROW_GROUP,
                column_encoding={"activation": "BYTE_STREAM_SPLIT", "acts.list.element": "BYTE_STREAM_SPLIT"},
                use_dictionary=["kind"])
    tok = top["tokens"]
    contexts = pd.DataFrame({"feature": top["feature"], "activation": top["activation"],
                             "center_token": vocab_arr[np.maximum(tok[:, acc.left], 0)] if len(tok) else []})
    top_tokens = _top_center_tokens(contexts, acc.d_sae)
    feats = pd.DataFrame({
        "feature": np.arange(acc.d_sae, dtype=np.int32), "count": count,
        "density": count / tokens,
        "mean_activation": np.where(count > 0, acc.sum.numpy() / np.maximum(count, 1), 0.0).astype(np.float32),
        "max_activation": acc.max.numpy(), "q50": q[:, 0], "q90": q[:, 1], "q99": q[:, 2],
        "hist": [row for row in acc.hist.numpy().astype(np.int32)],
        "top_tokens": top_tokens, "promoted": promoted, "suppressed": suppressed,
    })
    mass = acc.group_mass.numpy()
    feats["label"] = auto_labels(feats)
    feats["explanation"] = ""
    if acc.n_groups:
        share = mass / np.maximum(mass.sum(1, keepdims=True), 1e-12)
        for j in range(mass.shape[1]):
            feats[f"group_{j}"] = share[:, j].astype(np.float32)
    write_features(d / "features.parquet", feats, build)


def _context_rows(vals, refs, tokens, acts, *, by_activation: bool) -> dict[str, "np.ndarray"]:
    """The filled slots of one ``(d_sae, n)`` context buffer as flat numpy columns. ``rank`` is the slot (the top
    buffer is in activation order already) or, ``by_activation``, the rank by (activation descending, document,
    position) within the feature (the sample buffer is in key order)."""
    import numpy as np

    has = refs[:, :, 0] >= 0  # (d_sae, n)
    f_idx, r_idx = has.nonzero(as_tuple=True)
    out = {"feature": f_idx.numpy(), "rank": r_idx.numpy(), "activation": vals[f_idx, r_idx].numpy(),
           "document": refs[f_idx, r_idx, 0].numpy(), "position": refs[f_idx, r_idx, 1].numpy(),
           "tokens": tokens[f_idx, r_idx].numpy().reshape(len(f_idx), tokens.shape[-1]),
           "acts": acts[f_idx, r_idx].float().numpy().reshape(len(f_idx), acts.shape[-1])}
    if by_activation and len(f_idx):
        order = np.lexsort((out["position"], out["document"], -out["activation"], out["feature"]))
        out = {k: v[order] for k, v in out.items()}
        first = np.searchsorted(out["feature"], out["feature"])
        out["rank"] = np.arange(len(order)) - first
    return out


def write_vocab(out: Path, vocab: list[str], build: str | None) -> None:
    """``vocab.parquet``: row i is the readable string of token id i (how context windows are read back)."""
    import pyarrow as pa

    write_table(Path(out) / VOCAB_FILE, pa.table({"token": pa.array(list(vocab), type=pa.string())}), build)


def write_features(path: Path, feats: "pd.DataFrame", build: str | None) -> None:
    """The features table, atomically, with the build stamp (also used when labels are attached later)."""
    import pyarrow as pa

    write_table(path, pa.Table.from_pandas(feats, preserve_index=False), build)


def _top_center_tokens(contexts: "pd.DataFrame", d_sae: int, n: int = 3) -> list[list[str]]:
    """The tokens a feature fires on most, by summed activation over its top contexts."""
    out: list[list[str]] = [[] for _ in range(d_sae)]
    if not len(contexts):
        return out
    agg = contexts.groupby(["feature", "center_token"], sort=False)["activation"].sum().reset_index()
    agg = agg.sort_values(["feature", "activation"], ascending=[True, False], kind="stable")
    agg = agg[agg.groupby("feature", sort=False).cumcount() < n]
    for f, t in zip(agg.feature.tolist(), agg.center_token.tolist()):
        out[f].append(t)
    return out
