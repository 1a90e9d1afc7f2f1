"""``Scope``: a Qwen causal LM, its tokenizer and a bank of per-layer SAEs, behind one notebook-friendly object.

The data path of :meth:`Scope.run` reads top to bottom: prompt -> token ids -> one hooked forward (capture the
requested layers, apply steering) -> SAE codes of each captured residual -> :class:`~qscope_widgets.trace.Trace`.
One lock serialises hooked passes, because hooks live on the shared model: a widget's background refresh and a
notebook cell can never see each other's edits.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import torch
from torch import Tensor

from .errors import PromptError, QScopeError, UnknownLayerError
from .hooks import StopForward, resolve_edits, residual_hooks
from .model_layers import find_decoder_layers, input_device, max_context, model_width, text_config
from .sae.bank import SAEBank
from .sae.model import SparseAutoencoder
from .steering import SteeringLike, as_edits
from .tokens import readable_tokens
from .trace import LayerCodes, Trace

if TYPE_CHECKING:
    from .generation import Generation

PromptLike = str | Sequence[int] | Tensor


def _row_logsumexp(logits: Tensor, rows: int = 16) -> Tensor:
    """``logits.logsumexp(-1, keepdim=True)`` a few rows at a time: one (seq, vocab) temporary is a fresh multi-MB
    allocation (page faults on every run, ~10x the arithmetic on CPU); row blocks reuse small buffers."""
    if logits.shape[0] <= rows:
        return logits.logsumexp(-1, keepdim=True)
    return torch.cat([blk.logsumexp(-1, keepdim=True) for blk in logits.split(rows)])


def _dtype(d: Any) -> torch.dtype | None:
    if d is None or isinstance(d, torch.dtype):
        return d
    if isinstance(d, str) and isinstance(getattr(torch, d, None), torch.dtype):
        return getattr(torch, d)
    raise QScopeError(f"unknown dtype {d!r}; use e.g. 'float32' or 'bfloat16'")


class Scope:
    """Look inside, and steer, a Qwen model through its SAEs.

    Args:
        model: a Hugging Face causal LM (``Qwen3ForCausalLM``, ``Qwen3_5ForCausalLM``, the MoE variants, or the
            multimodal ``Qwen3_5ForConditionalGeneration``).
        tokenizer: its tokenizer.
        saes: an :class:`SAEBank`, or anything :func:`~qscope_widgets.sae.sources.resolve_source` accepts (a
            Qwen-Scope repo id or folder, SAELens folders, ``{layer: path}``, ``{layer: SparseAutoencoder}``).
        sae_dtype: SAE precision; default float32 on CPU (the release's), the model's dtype on an accelerator.
        sae_cache_bytes: the bank's device budget; ``None`` is unbounded (fine for the demo, not for 27B).
    """

    def __init__(self, model: Any, tokenizer: Any, saes: Any = None, *, sae_dtype: Any = None,
                 sae_cache_bytes: int | None = None, name: str | None = None, **sae_kwargs: Any):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.layers = find_decoder_layers(model)
        self.n_layers = len(self.layers)
        self.d_model = model_width(model)
        self.max_context = max_context(model)
        self.device = input_device(model)
        self.name = name or getattr(text_config(model), "_name_or_path", "") or type(model).__name__
        if sae_dtype is None:
            sae_dtype = torch.float32 if self.device.type == "cpu" else next(model.parameters()).dtype
        if isinstance(saes, SAEBank):
            self.saes = saes
        elif saes is None:
            from .sae.sources import InMemorySAEs

            self.saes = SAEBank(InMemorySAEs({}), d_model=self.d_model)
        else:
            from .sae.sources import resolve_source

            self.saes = SAEBank(resolve_source(saes, **sae_kwargs), d_model=self.d_model, device=self.device,
                                dtype=_dtype(sae_dtype), max_bytes=sae_cache_bytes)
        bad = [n for n in self.saes.layers if not 0 <= n < self.n_layers]
        if bad:
            raise UnknownLayerError(f"the SAEs cover layers {bad} but the model has layers 0..{self.n_layers - 1}: "
                                    "SAEs for another model?")
        self.feature_index = None
        self._lock = threading.RLock()

    # ------------------------------------------------------------------------------------------ construction
    @classmethod
    def from_pretrained(cls, model: str, saes: Any = None, *, device: str | None = None, dtype: Any = None,
                        device_map: Any = None, sae_dtype: Any = None, sae_cache_bytes: int | None = None,
                        tokenizer: Any = None, model_kwargs: dict | None = None, **sae_kwargs: Any) -> "Scope":
        """Load a model (and tokenizer) with transformers, and point at its SAEs (loaded lazily, per layer).

        ``device_map="auto"`` is passed to transformers/accelerate for models larger than one GPU; otherwise the
        model goes to ``device`` (default: CPU; pass ``"cuda"``). ``dtype`` defaults to float32 on CPU and
        bfloat16 on CUDA.
        """
        from transformers import AutoModelForCausalLM, AutoTokenizer

        kw = dict(model_kwargs or {})
        if device is None and device_map is None:
            device = "cpu"
        dt = _dtype(dtype) or (torch.bfloat16 if (device or "").startswith("cuda") or device_map else torch.float32)
        kw["dtype"] = dt
        if device_map is not None:
            kw["device_map"] = device_map
        m = AutoModelForCausalLM.from_pretrained(model, **kw)
        if device_map is None:
            m = m.to(device)
        tok = tokenizer or AutoTokenizer.from_pretrained(model)
        return cls(m, tok, saes, sae_dtype=sae_dtype, sae_cache_bytes=sae_cache_bytes, name=str(model), **sae_kwargs)

    @classmethod
    def demo(cls, **kwargs: Any) -> "Scope":
        """The embedded tiny Qwen3.5 model and its Qwen-Scope-format SAEs: offline, CPU, seconds to load."""
        from . import demo as _demo

        from transformers.utils import logging as hf_logging

        bar = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # a 10 MB model loads in ~0.1 s: a progress bar is only noise in a cell
        try:
            scope = cls.from_pretrained(str(_demo.model_dir()), saes=str(_demo.sae_dir()), **kwargs)
        finally:
            if bar:
                hf_logging.enable_progress_bar()
        scope.name = "qscope-demo"
        index_dir = getattr(_demo, "index_dir", None)
        if index_dir is not None and index_dir() is not None and index_dir().exists():
            try:
                scope.load_index(index_dir())
            except ImportError:
                pass
        return scope

    # ------------------------------------------------------------------------------------------ facts
    @property
    def sae_layers(self) -> list[int]:
        """Layers that have an SAE (loaded or not)."""
        return self.saes.layers

    def sae(self, layer: int) -> SparseAutoencoder:
        """The SAE of ``layer``, loading it on first use."""
        self.check_layer(layer)
        return self.saes.get(layer)

    @property
    def d_sae(self) -> int | None:
        """Features per layer (of the first SAE layer; releases use one width for all layers)."""
        return self.sae(self.sae_layers[0]).d_sae if self.sae_layers else None

    def __repr__(self) -> str:
        return (f"Scope({self.name!r}, layers={self.n_layers}, d_model={self.d_model}, "
                f"sae_layers={len(self.sae_layers)}, device={self.device.type})")

    def check_layer(self, layer: Any) -> int:
        """``layer`` if it is an int naming a decoder layer that has an SAE; else an :class:`UnknownLayerError`
        saying which (without loading the SAE)."""
        if isinstance(layer, bool) or not isinstance(layer, int):
            raise UnknownLayerError(f"layer must be an int, got {layer!r}")
        if not 0 <= layer < self.n_layers:
            raise UnknownLayerError(f"layer {layer} is out of range: the model has layers 0..{self.n_layers - 1}")
        if layer not in self.saes:
            raise UnknownLayerError(f"layer {layer} has no SAE; layers with SAEs: {self.sae_layers}")
        return layer

    def _resolve_layers(self, layers: Any) -> list[int]:
        if layers is None:
            return list(self.sae_layers)
        if isinstance(layers, int):
            layers = [layers]
        return sorted({self.check_layer(n) for n in layers})

    # ------------------------------------------------------------------------------------------ tokens
    def tokenize(self, prompt: PromptLike) -> Tensor:
        """``(1, seq)`` input ids on the model's input device; refuses empty or over-long prompts."""
        if isinstance(prompt, str):
            if prompt == "":
                raise PromptError("the prompt is empty")
            ids = self.tokenizer(prompt, add_special_tokens=True, return_tensors="pt")["input_ids"][0]
        elif isinstance(prompt, Tensor):
            ids = prompt.reshape(-1) if prompt.ndim <= 1 or prompt.shape[0] == 1 else None
            if ids is None:
                raise PromptError(f"pass one sequence of token ids, got a tensor of shape {tuple(prompt.shape)}")
            if ids.is_floating_point():
                raise PromptError("token ids must be integers")
            ids = ids.long().cpu()
        elif isinstance(prompt, (list, tuple)):
            if not all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
                raise PromptError("token ids must be a list of ints")
            ids = torch.tensor(prompt, dtype=torch.long)
        else:
            raise PromptError(f"the prompt must be a str or token ids, got {type(prompt).__name__}")
        if ids.numel() == 0:
            raise PromptError("the prompt has no tokens")
        vocab = self.model.get_input_embeddings().weight.shape[0]
        if int(ids.min()) < 0 or int(ids.max()) >= vocab:
            raise PromptError(f"token ids must be in 0..{vocab - 1}; got min {int(ids.min())}, max {int(ids.max())}")
        if self.max_context is not None and ids.numel() > self.max_context:
            raise PromptError(f"the prompt has {ids.numel()} tokens, more than the model's context of "
                              f"{self.max_context}")
        return ids[None].to(self.device)

    def token_strings(self, ids: Sequence[int] | Tensor) -> list[str]:
        return readable_tokens(self.tokenizer, ids.tolist() if isinstance(ids, Tensor) else ids)

    # ------------------------------------------------------------------------------------------ steering
    @contextmanager
    def steering(self, steering: SteeringLike, *, prompt_len: int | None = None,
                 max_len: int | None = None) -> Iterator[None]:
        """Apply steering to every forward of ``self.model`` inside the block; hooks go on every exit path.

        ``positions`` are relative to ``prompt_len`` (default: the context length, so negative positions count
        from the end of whatever is run).
        """
        edits = as_edits(steering)
        plen = prompt_len or self.max_context or 10**9
        with self._lock:
            resolved = resolve_edits(edits, self.saes, self.n_layers, plen, max_len=max_len)
            with residual_hooks(self.layers, edits=resolved, prompt_len=plen):
                yield

    # ------------------------------------------------------------------------------------------ the forward
    @torch.inference_mode()
    def run(self, prompt: PromptLike, layers: Any = None, steering: SteeringLike = None, *, top_n: int = 10,
            return_residuals: bool = False, cancel: Callable[[], bool] | None = None) -> Trace:
        """One hooked forward pass: SAE codes of ``layers`` (default: every SAE layer) and next-token predictions.

        ``steering`` edits apply during the pass; captured residuals (and so the codes) are the *edited* ones.
        ``cancel``: polled after each decoder layer; returning True abandons the run with
        :class:`~qscope_widgets.hooks.RunCancelled` (hooks removed, the model untouched).
        """
        t0 = time.perf_counter()
        ids = self.tokenize(prompt)
        layer_list = self._resolve_layers(layers)
        edits = as_edits(steering)
        seq = ids.shape[1]
        if not isinstance(top_n, int) or top_n < 1:
            raise QScopeError(f"top_n must be a positive int, got {top_n!r}")
        with self._lock:
            resolved = resolve_edits(edits, self.saes, self.n_layers, seq)
            saes = {n: self.saes.get(n) for n in layer_list}  # load (lazily) before the forward, outside hooks
            with residual_hooks(self.layers, capture=layer_list, edits=resolved, prompt_len=seq,
                                cancel=cancel) as session:
                out = self.model(input_ids=ids, use_cache=False)
            logits = out.logits[0].float()
            codes = {n: self._encode_layer(n, saes[n], session.captured[n][0]) for n in layer_list}
            residuals = ({n: session.captured[n][0].float().cpu() for n in layer_list} if return_residuals else None)
        # top-n of the logits, normalised by logsumexp: no (seq, vocab) softmax is materialised
        top_l, top_i = logits.topk(min(top_n, logits.shape[-1]), dim=-1)
        top_p = (top_l - _row_logsumexp(logits)).exp()
        top_i = top_i.cpu()
        tokens = self.token_strings(ids[0])
        return Trace(
            token_ids=ids[0].cpu(), tokens=tokens, layers=codes, next_ids=top_i, next_probs=top_p.cpu(),
            logits_last=logits[-1].cpu(), steering=edits,
            prompt=prompt if isinstance(prompt, str) else None, residuals=residuals,
            meta={"latency_s": time.perf_counter() - t0, "model": self.name}, token_decoder=self.token_strings,
        )

    @staticmethod
    def _encode_layer(layer: int, sae: SparseAutoencoder, x: Tensor) -> LayerCodes:
        codes = sae.encode_sparse(x)
        x32 = x.to(sae.dtype)
        x_hat = sae.decode_sparse(codes.ids, codes.values)
        norm = x32.norm(dim=-1)
        err = (x32 - x_hat).norm(dim=-1) / norm.clamp_min(torch.finfo(x32.dtype).tiny)
        return LayerCodes(layer=layer, ids=codes.ids.cpu(), values=codes.values.float().cpu(),
                          recon_error=err.float().cpu(), l0=(codes.values != 0).sum(-1).cpu(),
                          residual_norm=norm.float().cpu(), d_sae=sae.d_sae)

    @torch.inference_mode()
    def residuals(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                  layers: Sequence[int] | int = ()) -> dict[int, Tensor]:
        """Batched capture only: ``{layer: (batch, seq, d_model)}``, stopping after the deepest layer asked for.

        For corpus scans (the feature index): no steering, no logits, no SAE work, and the layers after the
        deepest requested one never run.
        """
        layer_list = [layers] if isinstance(layers, int) else list(layers)
        for n in layer_list:
            if not 0 <= n < self.n_layers:
                raise UnknownLayerError(f"layer {n} is out of range: the model has layers 0..{self.n_layers - 1}")
        if not layer_list:
            return {}
        input_ids = input_ids.to(self.device)
        if attention_mask is not None:
            attention_mask = attention_mask.to(self.device)
        with self._lock, residual_hooks(self.layers, capture=layer_list, prompt_len=input_ids.shape[1],
                                        stop_after=max(layer_list)) as session:
            try:
                self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
            except StopForward:
                pass
        return dict(session.captured)

    # ------------------------------------------------------------------------------------------ generation
    def generate(self, prompt: PromptLike, steering: SteeringLike = None, *, max_new_tokens: int = 32,
                 seed: int | None = 0, temperature: float = 0.0, top_p: float = 1.0,
                 on_token: Callable[[int, str, str], Any] | None = None, baseline: bool = True,
                 stop_at_eos: bool = True) -> "Generation":
        """Steered generation (and, with ``baseline=True``, the unsteered one from the same seed beside it)."""
        from .generation import generate

        return generate(self, prompt, steering, max_new_tokens=max_new_tokens, seed=seed, temperature=temperature,
                        top_p=top_p, on_token=on_token, baseline=baseline, stop_at_eos=stop_at_eos)

    # ------------------------------------------------------------------------------------------ other layers
    def index(self, corpus: Any, **kwargs: Any):
        """Scan a corpus into a per-feature index (see :func:`qscope_widgets.index.build_index`)."""
        from .index import build_index

        idx = build_index(self, corpus, **kwargs)
        self.feature_index = idx
        return idx

    def load_index(self, path: Any):
        """Attach a saved feature index (labels, densities, top contexts) to this scope."""
        from .index import FeatureIndex

        self.feature_index = FeatureIndex.load(path, scope=self)
        return self.feature_index

    # ------------------------------------------------------------------------------------------ widgets
    def explore(self, prompt: str = "", *, layer: int | None = None, feature: int | None = None,
                steering: SteeringLike = None, continuation_tokens: int = 24, **kwargs: Any):
        """The live explorer (token heatmap, feature sidebar, steering sliders, layer scrubber) on ``prompt``.

        Returns an :class:`~qscope_widgets.widgets.Explorer`; edit it from Python (``explorer.prompt = ...``,
        ``explorer.steering.add(...)``) or in the UI. ``layer`` defaults to the middle SAE layer.
        """
        from .widgets import Explorer

        return Explorer(self, prompt, layer=layer, feature=feature, steering=steering,
                        continuation_tokens=continuation_tokens, **kwargs)

    def feature(self, layer: int, feature: int, **kwargs: Any):
        """A feature's dashboard widget: label, density, histogram, top contexts, promoted tokens, pin button."""
        from .widgets import FeatureDashboard

        return FeatureDashboard(self, layer, feature, **kwargs)

    # ------------------------------------------------------------------------------------------ measurement
    def steering_eval(self, prompts: Any, edits: SteeringLike, **kwargs: Any):
        """Steer ``edits`` on ``prompts`` beside same-norm controls and measure effect and fluency: a tidy
        DataFrame with ``.summary()`` and ``.plot_effect()`` (see :mod:`qscope_widgets.steering_eval`)."""
        from .steering_eval import steering_eval

        return steering_eval(self, prompts, edits, **kwargs)
