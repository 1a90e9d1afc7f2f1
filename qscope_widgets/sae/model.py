"""The sparse autoencoder: exact to the Qwen-Scope formula, with room for ReLU and JumpReLU variants.

Qwen-Scope (``shared/qwen-scope.md``)::

    pre   = x @ W_enc.T + b_enc          # no b_dec subtracted first (apply_b_dec_to_input=False)
    z     = keep top-k of pre, then ReLU  # topk_activation="relu" (the official app); "identity" = model card
    x_hat = z @ W_dec.T + b_dec

Tensors keep the release's names and shapes: ``W_enc (d_sae, d_model)``, ``W_dec (d_model, d_sae)``,
``b_enc (d_sae,)``, ``b_dec (d_model,)``. ``W_dec`` is however *stored* feature-major (``W_dec.T`` is contiguous):
a feature's direction ``W_dec[:, f]`` is then one contiguous row, steering reads it without a strided gather, and
sparse decoding is an ``embedding_bag`` over k rows instead of a dense ``(seq, d_sae) @ (d_sae, d_model)`` product.
"""

from __future__ import annotations

from typing import Mapping, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import FeatureIndexError, SAEFormatError, SAEShapeError
from .config import SAEConfig

RELEASE_KEYS = ("W_enc", "W_dec", "b_enc", "b_dec")


class SparseCodes(NamedTuple):
    """The non-zero part of an SAE encoding: for every input row, feature ids and their values, by value descending."""

    ids: Tensor  # (..., n_active) int64
    values: Tensor  # (..., n_active) same dtype as the SAE

    def to_dense(self, d_sae: int) -> Tensor:
        out = torch.zeros(*self.ids.shape[:-1], d_sae, dtype=self.values.dtype, device=self.values.device)
        return out.scatter_(-1, self.ids, self.values)


def _all_finite(t: Tensor, block: int = 1 << 22) -> bool:
    """``isfinite(t).all()`` in blocks: one bool temporary of a 27B layer's W_enc would be 420 MB."""
    flat = t.detach().reshape(-1) if t.is_contiguous() else t.detach().T.reshape(-1)
    return all(bool(torch.isfinite(flat[i:i + block]).all()) for i in range(0, flat.numel(), block))


def _feature_major(n_features: int, d_model: int, **kw) -> Tensor:
    """An empty ``(d_model, n_features)`` tensor whose transpose is contiguous."""
    return torch.empty(n_features, d_model, **kw).T


class SparseAutoencoder(nn.Module):
    """One SAE on one hook point. All tensors are trainable ``nn.Parameter``s (the demo's SAEs train this class)."""

    def __init__(self, cfg: SAEConfig, *, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.cfg = cfg
        kw = {"device": device, "dtype": dtype}
        self.W_enc = nn.Parameter(torch.empty(cfg.d_sae, cfg.d_model, **kw))
        self.W_dec = nn.Parameter(_feature_major(cfg.d_sae, cfg.d_model, **kw))
        self.b_enc = nn.Parameter(torch.zeros(cfg.d_sae, **kw))
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_model, **kw))
        if cfg.architecture == "jumprelu":
            self.threshold = nn.Parameter(torch.zeros(cfg.d_sae, **kw))
        self.reset_parameters()

    # ------------------------------------------------------------------ construction
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Tied initialisation (decoder = encoder transpose, unit-norm columns), the usual TopK SAE start."""
        with torch.no_grad():
            w = torch.randn(self.cfg.d_sae, self.cfg.d_model, generator=generator, dtype=torch.float32)
            w /= w.norm(dim=1, keepdim=True)
            self.W_dec.T.copy_(w)
            self.W_enc.copy_(w)
            self.b_enc.zero_()
            self.b_dec.zero_()

    @staticmethod
    def check_state(state: Mapping[str, Tensor], cfg: SAEConfig | None = None, *, d_model: int | None = None,
                    **cfg_fields) -> SAEConfig:
        """The config of release-layout tensors, after checking names, dtypes and shapes; copies nothing.

        Used before streaming a file into the cache, so a bad file is refused before anything is written.
        """
        missing = [k for k in RELEASE_KEYS if k not in state]
        if missing:
            raise SAEFormatError(f"SAE state is missing {missing}; found keys {sorted(state)}")
        for name in RELEASE_KEYS:
            t = state[name]
            if not isinstance(t, Tensor) or not t.is_floating_point():
                raise SAEFormatError(f"SAE tensor {name!r} must be a floating-point tensor, got {type(t).__name__}"
                                     + (f" of {t.dtype}" if isinstance(t, Tensor) else ""))
        W_enc, W_dec, b_enc, b_dec = (state[k] for k in RELEASE_KEYS)
        if W_enc.ndim != 2:
            raise SAEShapeError(f"W_enc must be 2-D (d_sae, d_model), got shape {tuple(W_enc.shape)}")
        d_sae, dm = W_enc.shape
        expect = {"W_dec": (dm, d_sae), "b_enc": (d_sae,), "b_dec": (dm,)}
        for name, shape in expect.items():
            if tuple(state[name].shape) != shape:
                raise SAEShapeError(
                    f"SAE tensor {name} has shape {tuple(state[name].shape)}, expected {shape} "
                    f"given W_enc {tuple(W_enc.shape)} = (d_sae, d_model)"
                )
        if d_model is not None and dm != d_model:
            raise SAEShapeError(f"this SAE reads d_model={dm} but the model's residual stream has d_model={d_model}: "
                                "it was trained for another model")
        if cfg is None:
            cfg = SAEConfig(d_model=dm, d_sae=d_sae, **cfg_fields)
        elif cfg_fields:
            cfg = cfg.replace(**cfg_fields)
        if (cfg.d_model, cfg.d_sae) != (dm, d_sae):
            raise SAEShapeError(f"config says d_model={cfg.d_model}, d_sae={cfg.d_sae} but the tensors are "
                                f"d_model={dm}, d_sae={d_sae}")
        return cfg

    @classmethod
    def from_state_dict(
        cls,
        state: Mapping[str, Tensor],
        cfg: SAEConfig | None = None,
        *,
        d_model: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        **cfg_fields,
    ) -> "SparseAutoencoder":
        """Build from release-layout tensors (``W_enc (d_sae, d_model)``, ``W_dec (d_model, d_sae)``, biases).

        ``d_model`` (the model's width) is checked when given: an SAE for another model is refused here, not at
        the first matmul. Missing config fields (``k``) come from ``cfg_fields``.
        """
        cfg = cls.check_state(state, cfg, d_model=d_model, **cfg_fields)
        W_enc, W_dec, b_enc, b_dec = (state[k] for k in RELEASE_KEYS)
        d_sae = cfg.d_sae
        dtype = dtype or W_enc.dtype
        sae = cls.__new__(cls)
        nn.Module.__init__(sae)
        sae.cfg = cfg
        sae.W_enc = nn.Parameter(W_enc.to(device=device, dtype=dtype), requires_grad=False)
        # Keep W_dec feature-major; a release file is (d_model, d_sae) contiguous, so transpose once here.
        dec_rows = W_dec.T.to(device=device, dtype=dtype)
        sae.W_dec = nn.Parameter(dec_rows.contiguous().T, requires_grad=False)
        sae.b_enc = nn.Parameter(b_enc.to(device=device, dtype=dtype), requires_grad=False)
        sae.b_dec = nn.Parameter(b_dec.to(device=device, dtype=dtype), requires_grad=False)
        if cfg.architecture == "jumprelu":
            thr = state.get("threshold")
            if thr is None or tuple(thr.shape) != (d_sae,):
                raise SAEFormatError("a JumpReLU SAE needs a 'threshold' tensor of shape (d_sae,)")
            sae.threshold = nn.Parameter(thr.to(device=device, dtype=dtype), requires_grad=False)
        bad = [n for n, p in sae.named_parameters() if not _all_finite(p)]
        if bad:
            raise SAEFormatError(f"SAE tensors {bad} contain NaN or inf: the file is corrupt")
        return sae

    def release_state_dict(self, dtype: torch.dtype | None = None) -> dict[str, Tensor]:
        """The four tensors in the release's layout, contiguous, on CPU (what ``layer{n}.sae.pt`` holds)."""
        out = {
            "W_enc": self.W_enc.detach(),
            "W_dec": self.W_dec.detach(),
            "b_enc": self.b_enc.detach(),
            "b_dec": self.b_dec.detach(),
        }
        if self.cfg.architecture == "jumprelu":
            out["threshold"] = self.threshold.detach()
        return {k: v.to("cpu", dtype=dtype or v.dtype).contiguous().clone() for k, v in out.items()}

    # ------------------------------------------------------------------ properties
    @property
    def d_model(self) -> int:
        return self.cfg.d_model

    @property
    def d_sae(self) -> int:
        return self.cfg.d_sae

    @property
    def dtype(self) -> torch.dtype:
        return self.W_enc.dtype

    @property
    def device(self) -> torch.device:
        return self.W_enc.device

    def nbytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.parameters())

    def check_feature(self, feature: int) -> int:
        from ..validate import as_int

        f = as_int(feature, "feature", error=FeatureIndexError)
        if not 0 <= f < self.d_sae:
            raise FeatureIndexError(f"feature {feature!r} is out of range: this SAE has features 0..{self.d_sae - 1}"
                                    + (f" (layer {self.cfg.layer})" if self.cfg.layer is not None else ""))
        return f

    def decoder_direction(self, feature: int) -> Tensor:
        """``W_dec[:, f]``, the raw (not normalised) direction that ``add`` steering adds."""
        return self.W_dec[:, self.check_feature(feature)]

    def decoder_norms(self) -> Tensor:
        """Norm of every decoder column; Qwen-Scope does not promise unit norm, so we measure it."""
        return self.W_dec.detach().norm(dim=0)

    # ------------------------------------------------------------------ the formula
    def pre_activations(self, x: Tensor) -> Tensor:
        x = x.to(self.dtype)
        if self.cfg.apply_b_dec_to_input:
            x = x - self.b_dec
        return F.linear(x, self.W_enc, self.b_enc)

    def encode_sparse(self, x: Tensor) -> SparseCodes:
        """Encode to the active features only: ``(..., k)`` ids and values, values descending.

        For TopK SAEs this is exactly k entries per row (with ``topk_activation="relu"`` some may be 0 when fewer
        than k pre-activations are positive). ReLU / JumpReLU SAEs return as many entries as the busiest row has
        active features, zero-padded.
        """
        pre = self.pre_activations(x)
        cfg = self.cfg
        if cfg.architecture == "topk":
            values, ids = pre.topk(cfg.k, dim=-1)  # sorted descending
            if cfg.topk_activation == "relu":
                values = values.relu()  # relu(topk(pre)) has the same non-zero codes as topk(relu(pre))
            return SparseCodes(ids, values)
        z = self._dense_activation(pre)
        n = int((z > 0).sum(-1).max().item()) if z.numel() else 0
        values, ids = z.topk(max(n, 1), dim=-1)
        return SparseCodes(ids, values)

    def _dense_activation(self, pre: Tensor) -> Tensor:
        if self.cfg.architecture == "jumprelu":
            return pre * (pre > self.threshold)
        return pre.relu()

    def encode(self, x: Tensor) -> Tensor:
        """Dense codes ``(..., d_sae)``. Prefer :meth:`encode_sparse` for anything large."""
        if self.cfg.architecture == "topk":
            return self.encode_sparse(x).to_dense(self.d_sae)
        return self._dense_activation(self.pre_activations(x))

    def decode_sparse(self, ids: Tensor, values: Tensor) -> Tensor:
        """``x_hat`` from sparse codes: a weighted sum of k decoder rows plus ``b_dec``."""
        lead = ids.shape[:-1]
        rows = F.embedding_bag(
            ids.reshape(-1, ids.shape[-1]),
            self.W_dec.T,
            per_sample_weights=values.reshape(-1, values.shape[-1]).to(self.dtype),
            mode="sum",
        )
        return rows.reshape(*lead, self.d_model) + self.b_dec

    def decode(self, z: Tensor) -> Tensor:
        """``x_hat = z @ W_dec.T + b_dec`` from dense codes."""
        return F.linear(z.to(self.dtype), self.W_dec, self.b_dec)

    def forward(self, x: Tensor) -> Tensor:
        return self.decode_sparse(*self.encode_sparse(x))

    def extra_repr(self) -> str:
        c = self.cfg
        s = f"d_model={c.d_model}, d_sae={c.d_sae}, architecture={c.architecture}"
        if c.architecture == "topk":
            s += f", k={c.k}, topk_activation={c.topk_activation}"
        if c.layer is not None:
            s += f", layer={c.layer}"
        return s
