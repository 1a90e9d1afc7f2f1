"""Streaming per-feature statistics and top-N activating contexts, with memory bounded by ``d_sae``.

Everything works on the sparse codes of a batch (``(tokens, k)`` ids and values), never on a dense
``(tokens, d_sae)`` tensor:

* counts, sums and maxima are ``index_add`` / ``scatter_reduce`` into ``(d_sae,)`` vectors. Sums are exact
  integers in units of ``2**-SUM_BITS`` (each float32 activation is rounded once to that grid, then added without
  rounding), so they do not depend on the order tokens are seen in: a corpus scanned in shards and merged gives the
  same sums, bit for bit, as one scan;
* a histogram per feature over fixed log-spaced bins (quantiles are read from it at the end);
* activation mass per corpus group (e.g. per genre or per source), when groups are given;
* the top-N contexts per feature: a ``(d_sae, N)`` buffer merged with each batch. Only features that received a
  candidate above their current N-th value are touched, and each candidate carries its token window and the
  feature's activations over that window, gathered while the batch's codes are at hand;
* a uniform random sample of ``sample_n`` of each feature's firings (contexts from every activation range, not
  only the top): each firing gets a pseudo-random key that depends only on (document, position, feature)
  (:func:`sample_keys`, a splitmix64 hash), and a feature keeps the ``sample_n`` firings with the smallest keys (a
  bottom-k sample). Because the key depends on the firing alone, the sample does not depend on the order tokens
  are seen in, and it is kept like the top-N buffer (same window, only features with a candidate below their
  current threshold are touched).

The whole state is a dict of tensors (:meth:`state_dict`), so a build can checkpoint and resume exactly, and
:meth:`FeatureAccumulator.merge` folds in the state of another shard of the same corpus exactly: counts,
histograms and sums add, maxima take the max, and the top-N contexts of the union are re-selected with the scan's
own order for ties (value descending, then document, then position), which is the order a single scan keeps; the
samples of the union are the ``sample_n`` smallest (key, document, position), exactly what one scan keeps.
"""

from __future__ import annotations

import torch
from torch import Tensor

HIST_LO, HIST_HI, HIST_BINS = -3.0, 3.0, 48  # log10 activation bins: 1e-3 .. 1e3
SUM_BITS = 24  # sums are int64 in units of 2**-24 (~6e-8): exact and order-free up to ~5e11 of summed activation
STATE_KEYS = ("count", "sum_fx", "max", "hist", "group_mass_fx", "top_vals", "top_refs", "top_tokens", "top_acts",
              "sample_keys", "sample_vals", "sample_refs", "sample_tokens", "sample_acts")
NO_KEY = torch.iinfo(torch.long).max  # an empty sample slot; real keys are < 2**62 (see sample_keys)

_GOLDEN = -7046029254386353131  # 0x9E3779B97F4A7C15 as a signed int64
_MIX1 = -4658895280553007687  # 0xBF58476D1CE4E5B9
_MIX2 = -7723592293110705685  # 0x94D049BB133111EB


def _shr(x: Tensor, s: int) -> Tensor:
    """Logical right shift of int64 (torch's ``>>`` is arithmetic: it copies the sign bit)."""
    return (x >> s) & ((1 << (64 - s)) - 1)


def splitmix64(x: Tensor) -> Tensor:
    """The splitmix64 finaliser on int64 tensors (wrapping arithmetic, the bits of the uint64 algorithm)."""
    x = x + _GOLDEN
    x = (x ^ _shr(x, 30)) * _MIX1
    x = (x ^ _shr(x, 27)) * _MIX2
    return x ^ _shr(x, 31)


def sample_keys(doc: Tensor, pos: Tensor, feature: Tensor) -> Tensor:
    """The sampling key of each firing: a 62-bit pseudo-random int64 that depends only on (document, token position
    in the document, feature). A feature's ``sample_n`` firings with the smallest keys are a uniform random sample
    of all its firings, and the same whichever shard or batch saw them."""
    h = splitmix64(doc.long())
    h = splitmix64(h ^ pos.long())
    h = splitmix64(h ^ feature.long())
    return _shr(h, 2)


def to_fixed(v: Tensor) -> Tensor:
    """``round(v * 2**SUM_BITS)`` as int64: the grid every summed activation is put on once."""
    return torch.round(v.double() * 2.0**SUM_BITS).long()


def from_fixed(x: Tensor) -> Tensor:
    """Back to float64 activations."""
    return x.double() / 2.0**SUM_BITS


def hist_edges(device: torch.device | str | None = None) -> Tensor:
    """The ``HIST_BINS + 1`` log-spaced bin edges; activations outside them fall into the first / last bin."""
    return torch.logspace(HIST_LO, HIST_HI, HIST_BINS + 1, device=device)


class FeatureAccumulator:
    def __init__(self, d_sae: int, *, top_n: int = 10, left: int = 12, right: int = 4, n_groups: int = 0,
                 sample_n: int = 24, device: torch.device | str | None = None):
        self.d_sae, self.top_n, self.left, self.right = d_sae, top_n, left, right
        self.sample_n = sample_n
        self.window = left + 1 + right
        self.n_groups = n_groups
        self.device = torch.device(device or "cpu")
        self.tokens = 0
        kw = {"device": self.device}
        self.count = torch.zeros(d_sae, dtype=torch.long, **kw)
        self.sum_fx = torch.zeros(d_sae, dtype=torch.long, **kw)
        self.max = torch.zeros(d_sae, **kw)
        self.hist = torch.zeros(d_sae, HIST_BINS, dtype=torch.long, **kw)
        self.group_mass_fx = torch.zeros(d_sae, max(n_groups, 1), dtype=torch.long, **kw)
        self.top_vals = torch.zeros(d_sae, top_n, **kw)
        self.top_refs = torch.full((d_sae, top_n, 2), -1, dtype=torch.long, **kw)  # (document, token position)
        self.top_tokens = torch.full((d_sae, top_n, self.window), -1, dtype=torch.int32, **kw)
        self.top_acts = torch.zeros(d_sae, top_n, self.window, dtype=torch.float16, **kw)
        # the sample, sorted by (key, document, position) ascending; empty slots have key NO_KEY and refs -1
        self.sample_keys = torch.full((d_sae, sample_n), NO_KEY, dtype=torch.long, **kw)
        self.sample_vals = torch.zeros(d_sae, sample_n, **kw)
        self.sample_refs = torch.full((d_sae, sample_n, 2), -1, dtype=torch.long, **kw)
        self.sample_tokens = torch.full((d_sae, sample_n, self.window), -1, dtype=torch.int32, **kw)
        self.sample_acts = torch.zeros(d_sae, sample_n, self.window, dtype=torch.float16, **kw)
        self._bounds = torch.linspace(HIST_LO, HIST_HI, HIST_BINS + 1, **kw)[1:-1]

    def nbytes(self) -> int:
        """Memory held by the state: fixed by ``d_sae``, ``top_n``, ``sample_n`` and the window, whatever the
        corpus size."""
        return sum(t.numel() * t.element_size() for t in self.state_dict().values())

    # ------------------------------------------------------------------------------------------ one batch
    def update(self, ids: Tensor, values: Tensor, input_ids: Tensor, lengths: Tensor, doc: Tensor, start: Tensor,
               group: Tensor | None = None) -> None:
        """Add one batch.

        Args:
            ids, values: ``(B, S, k)`` sparse codes of a right-padded batch.
            input_ids: ``(B, S)`` token ids; ``lengths`` ``(B,)`` real lengths; ``doc`` / ``start`` ``(B,)``: the
                document of each row and the token offset of the row inside it; ``group`` ``(B,)`` group ids.
        """
        B, S, k = ids.shape
        dev = self.device
        ids, values, input_ids, lengths = ids.to(dev), values.to(dev), input_ids.to(dev), lengths.to(dev)
        doc, start = doc.to(dev), start.to(dev)
        valid = torch.arange(S, device=dev)[None, :] < lengths[:, None]  # (B, S)
        self.tokens += int(valid.sum())
        active = (values > 0) & valid[..., None]
        flat = active.view(-1).nonzero().squeeze(1)  # 1-D gathers: much cheaper than (row, pos, slot) indexing
        f = ids.reshape(-1)[flat]
        v = values.reshape(-1)[flat].float()
        row = flat // (S * k)
        pos = (flat // k) % S
        self.count.index_add_(0, f, torch.ones_like(f))
        fx = to_fixed(v)
        self.sum_fx.index_add_(0, f, fx)
        self.max.scatter_reduce_(0, f, v, reduce="amax")
        b = torch.bucketize(v.clamp(10**HIST_LO, 10**HIST_HI * 0.999).log10(), self._bounds)
        self.hist.view(-1).index_add_(0, f * HIST_BINS + b, torch.ones_like(f))
        if group is not None:
            g = group.to(dev)[row]
            self.group_mass_fx.view(-1).index_add_(0, f * self.group_mass_fx.shape[1] + g, fx)
        self._merge_top(f, v, row, pos, ids, values, input_ids, lengths, doc, start)
        if self.sample_n:
            self._merge_sample(f, v, row, pos, ids, values, input_ids, lengths, doc, start)

    def _windows(self, f, row, pos, ids, values, input_ids, lengths) -> tuple[Tensor, Tensor]:
        """The token window around each candidate (``-1`` outside the document) and the feature's activation over
        it, gathered from the batch's sparse codes."""
        dev = self.device
        offs = torch.arange(-self.left, self.right + 1, device=dev)
        wpos = pos[:, None] + offs[None, :]  # (M, W)
        inside = (wpos >= 0) & (wpos < lengths[row][:, None])
        wpos_c = wpos.clamp(0, ids.shape[1] - 1)
        S, k = ids.shape[1], ids.shape[2]
        tok_idx = row[:, None] * S + wpos_c  # (M, W) into the flattened (B * S) tokens
        wtok = torch.where(inside, input_ids.reshape(-1)[tok_idx], torch.full_like(wpos, -1))
        wids = ids.reshape(-1, k)[tok_idx]  # (M, W, k)
        wvals = values.reshape(-1, k)[tok_idx]
        wact = ((wids == f[:, None, None]) * wvals.clamp_min(0)).sum(-1) * inside  # active = positive, as above
        return wtok, wact

    def _merge_sample(self, f, v, row, pos, ids, values, input_ids, lengths, doc, start) -> None:
        """Fold this batch's firings into the bottom-``sample_n`` buffers by (key, document, position)."""
        n = self.sample_n
        d, p = doc[row], start[row] + pos
        key = sample_keys(d, p, f)
        keep = key <= self.sample_keys[:, -1].contiguous()[f]  # <=: a tie on the key is settled by (doc, pos)
        if not keep.any():
            return
        f, v, row, pos, key, d, p = f[keep], v[keep], row[keep], pos[keep], key[keep], d[keep], p[keep]
        # at most n candidates per feature from this batch (the n smallest (key, doc, pos) of each)
        order = _key_order(f, key, d, p)
        fs = f[order]
        rank = torch.arange(len(fs), device=fs.device) - torch.searchsorted(fs, fs)
        order = order[rank < n]
        f, v, row, pos, key, d, p = f[order], v[order], row[order], pos[order], key[order], d[order], p[order]
        wtok, wact = self._windows(f, row, pos, ids, values, input_ids, lengths)
        refs = torch.stack([d, p], dim=1)
        # merge with the buffers of the touched features
        dev = self.device
        uf, g = torch.unique(f, return_inverse=True)
        U = len(uf)
        old_refs = self.sample_refs[uf].reshape(U * n, 2)
        all_k = torch.cat([self.sample_keys[uf].reshape(-1), key])
        all_d = torch.cat([old_refs[:, 0], d])
        all_p = torch.cat([old_refs[:, 1], p])
        all_g = torch.cat([torch.arange(U, device=dev).repeat_interleave(n), g])
        order = _key_order(all_g, all_k, all_d, all_p)  # empty slots (NO_KEY) sort last in their group
        grp = all_g[order]
        rank = torch.arange(len(order), device=dev) - torch.searchsorted(grp, grp)
        sel = rank < n
        src, dst_g, dst_r = order[sel], grp[sel], rank[sel]
        for name, new in (("sample_keys", key), ("sample_vals", v), ("sample_refs", refs),
                          ("sample_tokens", wtok), ("sample_acts", wact)):
            buf = getattr(self, name)
            old = buf[uf].reshape(U * n, *buf.shape[2:])
            chosen = torch.cat([old, new.to(buf.dtype)])[src]
            block = torch.empty((U, n) + tuple(buf.shape[2:]), dtype=buf.dtype, device=dev)
            block[dst_g, dst_r] = chosen
            buf[uf] = block

    def _merge_top(self, f, v, row, pos, ids, values, input_ids, lengths, doc, start) -> None:
        N = self.top_n
        keep = v > self.top_vals[:, -1].contiguous()[f]
        if not keep.any():
            return
        f, v, row, pos = f[keep], v[keep], row[keep], pos[keep]
        # at most N candidates per feature from this batch
        f, v, row, pos = _top_per_group(f, v, N, row, pos)
        # gather the token window and the feature's activation over it
        dev = self.device
        wtok, wact = self._windows(f, row, pos, ids, values, input_ids, lengths)
        refs = torch.stack([doc[row], start[row] + pos], dim=1)
        # merge with the buffers of the touched features
        uf, g = torch.unique(f, return_inverse=True)
        U = len(uf)
        all_v = torch.cat([self.top_vals[uf].reshape(-1), v])
        all_g = torch.cat([torch.arange(U, device=dev).repeat_interleave(N), g])
        order = torch.argsort(all_v, descending=True, stable=True)
        order = order[torch.argsort(all_g[order], stable=True)]
        grp = all_g[order]
        first = torch.searchsorted(grp, torch.arange(U, device=dev))
        rank = torch.arange(len(order), device=dev) - first[grp]
        sel = rank < N
        src, dst_g, dst_r = order[sel], grp[sel], rank[sel]
        old_n = U * N

        def pick(old: Tensor, new: Tensor) -> Tensor:
            flat_old = old[uf].reshape(old_n, *old.shape[2:])
            return torch.cat([flat_old, new.to(old.dtype)])[src]

        new_vals = torch.empty(U, N, device=dev)
        new_vals[dst_g, dst_r] = all_v[src]
        self.top_vals[uf] = new_vals
        for name, new in (("top_refs", refs), ("top_tokens", wtok), ("top_acts", wact)):
            buf = getattr(self, name)
            chosen = pick(buf, new)
            block = torch.empty((U, N) + tuple(buf.shape[2:]), dtype=buf.dtype, device=dev)
            block[dst_g, dst_r] = chosen
            buf[uf] = block

    # ------------------------------------------------------------------------------------------ results
    def quantiles(self, qs=(0.5, 0.9, 0.99)) -> Tensor:
        """``(d_sae, len(qs))`` activation quantiles (bin upper edges) over the tokens where a feature fired."""
        cum = self.hist.cumsum(1).double()
        tot = cum[:, -1:].clamp_min(1)
        edges = hist_edges(self.hist.device)[1:]
        out = []
        for q in qs:
            idx = (cum / tot < q).sum(1).clamp(max=HIST_BINS - 1)
            out.append(torch.where(self.count > 0, edges[idx], torch.zeros((), device=edges.device)))
        return torch.stack(out, 1)

    @property
    def sum(self) -> Tensor:
        """``(d_sae,)`` float64 summed activation per feature."""
        return from_fixed(self.sum_fx)

    @property
    def group_mass(self) -> Tensor:
        """``(d_sae, max(n_groups, 1))`` float64 summed activation per feature and corpus group."""
        return from_fixed(self.group_mass_fx)

    def state_dict(self) -> dict[str, Tensor]:
        return {name: getattr(self, name) for name in STATE_KEYS} | {"tokens": torch.tensor(self.tokens)}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        missing = [k for k in STATE_KEYS + ("tokens",) if k not in state]
        if missing:
            raise KeyError(f"accumulator state lacks {missing} (written by another version?)")
        for name, t in state.items():
            if name == "tokens":
                self.tokens = int(t)
            elif name in STATE_KEYS:
                buf = getattr(self, name)
                if tuple(t.shape) != tuple(buf.shape):
                    raise ValueError(f"accumulator state {name!r} has shape {tuple(t.shape)}, expected "
                                     f"{tuple(buf.shape)} (other settings?)")
                buf.copy_(t)  # copy_ converts device

    def merge(self, other: "FeatureAccumulator | dict[str, Tensor]") -> "FeatureAccumulator":
        """Fold in another shard's accumulator (or its ``state_dict``), in place; returns ``self``.

        Exact: counts, histograms and the fixed-point sums add, maxima take the max, and the top-N contexts are
        re-selected from both buffers by (activation descending, document, position) — the order in which one
        scan of the whole corpus keeps them (an earlier token wins a tie); the samples are re-selected as the
        ``sample_n`` smallest (key, document, position) of both. Shards must come from disjoint token sets of one
        corpus with the same settings (``top_n``, ``sample_n``, window, groups).
        """
        st = other.state_dict() if isinstance(other, FeatureAccumulator) else other
        dev = self.device
        for name in ("count", "sum_fx", "hist", "group_mass_fx"):
            getattr(self, name).add_(st[name].to(dev))
        self.max = torch.maximum(self.max, st["max"].to(dev))
        self.tokens += int(st["tokens"])
        vals = torch.cat([self.top_vals, st["top_vals"].to(dev)], 1)  # (d_sae, 2N)
        refs = torch.cat([self.top_refs, st["top_refs"].to(dev)], 1)
        big = torch.iinfo(torch.long).max
        doc = torch.where(refs[..., 0] >= 0, refs[..., 0], torch.full_like(refs[..., 0], big))
        pos = torch.where(refs[..., 0] >= 0, refs[..., 1], torch.full_like(refs[..., 1], big))
        # lexicographic (value desc, document asc, position asc) by stable sorts, least significant key first
        order = torch.argsort(pos, dim=1, stable=True)
        order = order.gather(1, torch.argsort(doc.gather(1, order), dim=1, stable=True))
        order = order.gather(1, torch.argsort(vals.gather(1, order), dim=1, descending=True, stable=True))
        order = order[:, : self.top_n]
        self.top_vals = vals.gather(1, order)
        self.top_refs = refs.gather(1, order[..., None].expand(-1, -1, 2))
        for name in ("top_tokens", "top_acts"):
            both = torch.cat([getattr(self, name), st[name].to(dev)], 1)
            setattr(self, name, both.gather(1, order[..., None].expand(-1, -1, self.window)).contiguous())
        self.top_vals, self.top_refs = self.top_vals.contiguous(), self.top_refs.contiguous()
        self._merge_sample_states(st)
        return self

    def _merge_sample_states(self, st: dict[str, Tensor]) -> None:
        """The union's ``sample_n`` smallest (key, document, position): what one scan of both shards keeps."""
        if not self.sample_n:
            return
        dev = self.device
        keys = torch.cat([self.sample_keys, st["sample_keys"].to(dev)], 1)  # (d_sae, 2n)
        refs = torch.cat([self.sample_refs, st["sample_refs"].to(dev)], 1)
        order = torch.argsort(refs[..., 1], dim=1, stable=True)  # least significant key first
        order = order.gather(1, torch.argsort(refs[..., 0].gather(1, order), dim=1, stable=True))
        order = order.gather(1, torch.argsort(keys.gather(1, order), dim=1, stable=True))
        order = order[:, : self.sample_n]  # empty slots hold NO_KEY: they sort after every real firing
        for name in ("sample_keys", "sample_vals", "sample_refs", "sample_tokens", "sample_acts"):
            both = torch.cat([getattr(self, name), st[name].to(dev)], 1)
            idx = order.reshape(order.shape + (1,) * (both.ndim - 2)).expand(-1, -1, *both.shape[2:])
            setattr(self, name, both.gather(1, idx).contiguous())

    def to_cpu(self) -> "FeatureAccumulator":
        """A CPU copy (for writing the index from a GPU build)."""
        if self.device.type == "cpu":
            return self
        out = self.empty_like("cpu")
        out.load_state_dict(self.state_dict())
        return out

    def empty_like(self, device: torch.device | str | None = None) -> "FeatureAccumulator":
        """A fresh accumulator with the same shape settings."""
        return FeatureAccumulator(self.d_sae, top_n=self.top_n, left=self.left, right=self.right,
                                  n_groups=self.n_groups, sample_n=self.sample_n,
                                  device=device if device is not None else self.device)


def _lex_order(*keys: Tensor) -> Tensor:
    """The permutation sorting by ``keys[0]``, then ``keys[1]``, ... ascending (stable sorts, last key first)."""
    order = torch.argsort(keys[-1], stable=True)
    for k in reversed(keys[:-1]):
        order = order[torch.argsort(k[order], stable=True)]
    return order


def _key_order(group: Tensor, key: Tensor, doc: Tensor, pos: Tensor) -> Tensor:
    """``_lex_order(group, key, doc, pos)``, with two sorts instead of four when no two entries of a group share a
    key (62-bit keys: practically always; empty slots all hold NO_KEY but are identical, so their order is moot)."""
    order = torch.argsort(key, stable=True)
    order = order[torch.argsort(group[order], stable=True)]
    g, k = group[order], key[order]
    tie = (g[1:] == g[:-1]) & (k[1:] == k[:-1]) & (k[1:] != NO_KEY)
    return _lex_order(group, key, doc, pos) if bool(tie.any()) else order


def _top_per_group(f: Tensor, v: Tensor, n: int, *payload: Tensor) -> tuple[Tensor, ...]:
    """Keep the ``n`` largest ``v`` of each ``f`` group (ties: first seen)."""
    order = torch.argsort(v, descending=True, stable=True)
    order = order[torch.argsort(f[order], stable=True)]
    fs = f[order]
    first = torch.searchsorted(fs, fs, right=False)
    rank = torch.arange(len(fs), device=fs.device) - first
    order = order[rank < n]
    return (f[order], v[order]) + tuple(p[order] for p in payload)
