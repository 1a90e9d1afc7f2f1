"""Notebook 7's monitor protocol on all six genre pairs, for several ways of choosing and weighting the features,
beside the bag-of-words baseline: does any principled choice beat the notebook's defaults?

    PYTHONPATH=. python3 benchmarks/monitor_auc.py            # a few minutes on 2 shared CPU cores

Protocol (as notebook 7): the demo's shipped held-out documents (12 per genre) go alternately to a *choose* half and
an *evaluate* half (by document), cut into 40-word passages. Features are chosen (and weights fitted) on the choose
half only; ROC AUC is measured on the evaluate half. Variants (n = 1, 5, 20 features):

* ``rate/max`` (the notebook's default): the n features most active on `a` by firing-rate difference
  (``contrast(by="rate").head(n)``), weights ``sign / typical activation``, text score = max over tokens;
* ``effect/max``: the n features of largest standardized effect size (Cohen's d of the per-token activation,
  ``by="effect"``), same weights and reduction;
* ``rate/mean``, ``effect/mean``: the same with the text score = mean over tokens;
* ``effect±/mean``: the n features of largest |effect size| from both ends (features of `b` count against);
* ``effect±/mean+LR``: the same features, weights fitted by an L2 logistic regression on the choose half's
  mean-pooled activations (with ``reduce="mean"`` the monitor's score is exactly that linear model's logit, less
  the bias).

Then a variant is *selected without the evaluation half*: 2-fold cross-validation inside the choose half (contrast
and fit on one fold of documents, AUC on the other, mean over folds and pairs, at n = 5), and the selected variant's
evaluation-half AUCs are reported.
"""

from __future__ import annotations

import argparse
import itertools
import re
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GENRES = ["bible", "python", "wordnet", "fortune"]
NS = (1, 5, 20)
VARIANTS = ["rate/max", "effect/max", "rate/mean", "effect/mean", "effect±/mean", "effect±/mean+LR"]


def passages(texts: list[str], words: int = 40) -> list[str]:
    out = []
    for t in texts:
        w = t.split()
        out += [" ".join(w[i:i + words]) for i in range(0, len(w), words) if len(w[i:i + words]) >= 5]
    return out


def logistic(X: np.ndarray, y: np.ndarray, l2: float = 1e-2) -> tuple[np.ndarray, float]:
    """L2-regularised logistic regression (LBFGS), columns standardised on the training rows."""
    Xt = torch.tensor(X, dtype=torch.float64)
    mu, sd = Xt.mean(0), Xt.std(0).clamp_min(1e-6)
    Z = (Xt - mu) / sd
    yt = torch.tensor(y, dtype=torch.float64)
    w = torch.zeros(Z.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=200)

    def loss():
        opt.zero_grad()
        out = torch.nn.functional.binary_cross_entropy_with_logits(Z @ w + b, yt) + l2 * w.pow(2).sum()
        out.backward()
        return out

    opt.step(loss)
    coef = (w / sd).detach().numpy()  # back to raw activations (the monitor's weights)
    return coef, float(b.detach() - (w.detach() / sd * mu).sum())


def bag_of_words_auc(train_a, train_b, test_a, test_b) -> float:
    """Notebook 7's baseline: logistic regression on log(1 + word counts), vocabulary and weights from the choose
    half only."""
    from qscope_widgets.monitor import roc_auc

    words = lambda t: re.findall(r"\w+|[^\w\s]", t.lower())  # noqa: E731
    vocab = {w: i for i, w in enumerate(sorted({w for t in train_a + train_b for w in words(t)}))}

    def counts(texts):
        X = torch.zeros(len(texts), len(vocab))
        for i, t in enumerate(texts):
            for w in words(t):
                if w in vocab:
                    X[i, vocab[w]] += 1
        return X.log1p()

    X, y = counts(train_a + train_b), torch.tensor([1.0] * len(train_a) + [0.0] * len(train_b))
    w = torch.zeros(len(vocab), requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=200)

    def loss():
        opt.zero_grad()
        out = torch.nn.functional.binary_cross_entropy_with_logits(X @ w + b, y) + 1e-2 * w.pow(2).sum()
        out.backward()
        return out

    opt.step(loss)
    scores = (counts(test_a + test_b) @ w + b).detach().numpy()
    return roc_auc(scores, [1] * len(test_a) + [0] * len(test_b))


class Pooled:
    """Mean-pooled activation of any (layer, feature) per trace (first token left out), computed once."""

    def __init__(self, traces):
        self.traces = traces
        self.cache: dict = {}

    def column(self, layer: int, f: int) -> np.ndarray:
        if (layer, f) not in self.cache:
            col = []
            for t in self.traces:
                a = t.layers[layer].activation_of(f).float()
                a = a[1:] if a.numel() > 1 else a  # the monitor's skip_first
                col.append(float(a.mean()))
            self.cache[(layer, f)] = np.array(col)
        return self.cache[(layer, f)]

    def matrix(self, pairs) -> np.ndarray:
        return np.stack([self.column(int(layer), int(f)) for layer, f in pairs], axis=1)


def monitor_for(scope, variant: str, df: pd.DataFrame, n: int, fit=None):
    """The monitor of one variant from a contrast of the choose texts (a vs b). ``fit``: (Pooled, labels) of the
    choose traces, for the LR weights."""
    by, reduce = variant.split("/")
    reduce, lr = (reduce.split("+")[0], "+LR" in reduce)
    if by == "rate":
        head = df.head(n)
    else:
        e = df.assign(difference=df["effect_size"])
        if by == "effect":
            head = e.sort_values("difference", ascending=False, kind="stable").head(n)
        else:  # effect±: both ends by |d|
            head = e.reindex(e["difference"].abs().sort_values(ascending=False, kind="stable").index).head(n)
    if not lr:
        return scope.monitor(head, reduce=reduce)
    pooled, y = fit
    pairs = list(zip(head.layer, head.feature))
    coef, _ = logistic(pooled.matrix(pairs), np.asarray(y, dtype=np.float64))
    return scope.monitor(pairs, weights=[float(c) for c in coef], reduce="mean")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.time()
    from qscope_widgets import Scope
    from qscope_widgets.monitor import roc_auc
    from qscope_widgets.notebook_utils import demo_texts, quiet_transformers

    quiet_transformers()
    scope = Scope.demo()
    rows = demo_texts()
    docs = {g: [r["text"] for r in rows if r["genre"] == g] for g in GENRES}
    choose = {g: d[0::2] for g, d in docs.items()}
    held = {g: d[1::2] for g, d in docs.items()}
    choose_p = {g: passages(choose[g]) for g in GENRES}
    eval_p = {g: passages(held[g]) for g in GENRES}
    # folds inside the choose half, by document: for selecting a variant without the evaluation half
    fold_docs = [{g: d[0::2] for g, d in choose.items()}, {g: d[1::2] for g, d in choose.items()}]
    fold_p = [{g: passages(f[g]) for g in GENRES} for f in fold_docs]
    eval_tr = {g: [scope.run(p) for p in eval_p[g]] for g in GENRES}
    fold_tr = [{g: [scope.run(p) for p in f[g]] for g in GENRES} for f in fold_p]
    choose_tr = {g: fold_tr[0][g] + fold_tr[1][g] for g in GENRES}  # the same passages, fold order
    choose_pp = {g: fold_p[0][g] + fold_p[1][g] for g in GENRES}
    print(f"passages: choose {sum(map(len, choose_p.values()))}, evaluate {sum(map(len, eval_p.values()))}; "
          f"traces in {time.time() - t0:.0f} s", flush=True)

    def auc_of(mon, tr_a, tr_b) -> float:
        return roc_auc(mon.score(tr_a + tr_b), [1] * len(tr_a) + [0] * len(tr_b))

    results, cv = [], []
    for ga, gb in itertools.combinations(GENRES, 2):
        df = scope.contrast(choose[ga], choose[gb])
        fit = (Pooled(choose_tr[ga] + choose_tr[gb]), [1] * len(choose_tr[ga]) + [0] * len(choose_tr[gb]))
        row = {"pair": f"{ga} vs {gb}",
               "bag-of-words": bag_of_words_auc(choose_p[ga], choose_p[gb], eval_p[ga], eval_p[gb])}
        for v in VARIANTS:
            for n in NS:
                row[(v, n)] = auc_of(monitor_for(scope, v, df, n, fit), eval_tr[ga], eval_tr[gb])
        results.append(row)
        # 2-fold CV inside the choose half (n = 5): contrast and fit on one fold, AUC on the other
        for k in (0, 1):
            tr, te = fold_docs[k], 1 - k
            dfk = scope.contrast(tr[ga], tr[gb])
            fitk = (Pooled(fold_tr[k][ga] + fold_tr[k][gb]), [1] * len(fold_tr[k][ga]) + [0] * len(fold_tr[k][gb]))
            for v in VARIANTS:
                cv.append({"pair": row["pair"], "fold": k, "variant": v,
                           "auc": auc_of(monitor_for(scope, v, dfk, 5, fitk), fold_tr[te][ga], fold_tr[te][gb])})
        print(f"{row['pair']}: done ({time.time() - t0:.0f} s)", flush=True)
    del choose_pp

    table = pd.DataFrame(results).set_index("pair")
    print("\nROC AUC on the unseen evaluation half (features and weights from the choose half only)\n")
    for n in NS:
        sub = pd.DataFrame({v: table[(v, n)] for v in VARIANTS})
        sub["bag-of-words"] = table["bag-of-words"]
        sub.loc["mean"] = sub.mean()
        sub.loc["pairs >= 0.95"] = (sub.iloc[:-1] >= 0.95).sum()
        print(f"n = {n} feature{'s' * (n > 1)}\n" + sub.round(3).to_string() + "\n")
    cvt = pd.DataFrame(cv).groupby("variant")["auc"].mean().reindex(VARIANTS)
    best = cvt.idxmax()
    print("2-fold CV inside the choose half (n = 5; mean AUC over folds and pairs):\n" + cvt.round(3).to_string())
    print(f"\nselected without the evaluation half: {best}; its evaluation-half AUC with 5 features: "
          + ", ".join(f"{p} {a:.3f}" for p, a in table[(best, 5)].items())
          + f"; mean {table[(best, 5)].mean():.3f} (default rate/max: {table[('rate/max', 5)].mean():.3f}, "
          f"bag-of-words {table['bag-of-words'].mean():.3f})")
    print(f"\ntotal {time.time() - t0:.0f} s")
    return {"table": table, "cv": cvt, "selected": best}


if __name__ == "__main__":
    main()
