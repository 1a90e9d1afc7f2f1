"""``Scope``: a Qwen causal LM, its tokenizer and a bank of per-layer SAEs, behind one notebook-friendly object.

The data path of :meth:`Scope.run` reads top to bottom: prompt -> token ids -> one hooked forward (capture the
requested layers, apply steering) -> SAE codes of each captured residual -> :class:`~qscope_widgets.trace.Trace`.
What holds under concurrency (threads, a widget's worker beside a notebook cell):

* :attr:`Scope.lock` serialises every hooked pass the package makes (``run``, ``residuals``, ``generate``,
  ``steering``, the index, ``evaluation``), so two of them never interleave their hooks or captures.
* The package's hooks act only on forwards run in the thread that installed them (see :mod:`.hooks`). A plain
  ``scope.model(ids)`` in a cell while a widget is steering runs unsteered and is never captured, lock or not.
* Inside ``with scope.steering(...)``, forwards in *that* thread are steered (``model(...)``, ``model.generate``);
  forwards started in other threads are not. Other package calls wait for the block to end (it holds the lock).
* Your own hooks on ``scope.model`` are yours to coordinate: hold ``scope.lock`` around them to keep the widgets'
  passes out.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import torch
from torch import Tensor

from .errors import PromptError, QScopeError, SteeringError, UnknownLayerError
from .hooks import StopForward, resolve_edits, residual_hooks
from .model_layers import find_decoder_layers, input_device, max_context, model_width, text_config
from .sae.bank import SAEBank
from .sae.model import SparseAutoencoder
from .steering import SteeringLike, as_edits
from .tokens import readable_tokens
from .trace import LayerCodes, NextTokens, Trace
from .validate import as_bool, as_callable, as_int, as_int_list, as_optional_int, as_str, is_int_like

if TYPE_CHECKING:
    from .generation import Generation

PromptLike = str | Sequence[int] | Tensor

#: Characters per token are at least ~1 for any tokenizer, so a text longer than this many characters per token of
#: context cannot fit; it is refused before tokenizing (tokenizing 2 million characters takes seconds).
MAX_CHARS_PER_TOKEN = 64


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
        sae_cache_bytes = as_optional_int(sae_cache_bytes, "sae_cache_bytes", min=1)
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

    @property
    def lock(self) -> threading.RLock:
        """The re-entrant lock every hooked pass of this scope holds (see the module docstring for what it buys).

        Hold it around your own multi-step work on ``scope.model`` (``with scope.lock: ...``) to keep the
        widgets' background passes from interleaving with it."""
        return self._lock

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
        return self.saes.get(self.check_layer(layer))

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
        layer = as_int(layer, "layer", error=UnknownLayerError)
        if not 0 <= layer < self.n_layers:
            raise UnknownLayerError(f"layer {layer} is out of range: the model has layers 0..{self.n_layers - 1}")
        if layer not in self.saes:
            raise UnknownLayerError(f"layer {layer} has no SAE; layers with SAEs: {self.sae_layers}")
        return layer

    def _resolve_layers(self, layers: Any) -> list[int]:
        if layers is None:
            return list(self.sae_layers)
        if is_int_like(layers):
            layers = [layers]
        elif isinstance(layers, (str, bytes, dict)) or not hasattr(layers, "__iter__"):
            raise UnknownLayerError(f"layers must be an int, a list of ints or None, got {layers!r}")
        return sorted({self.check_layer(n) for n in layers})

    # ------------------------------------------------------------------------------------------ tokens
    def tokenize(self, prompt: PromptLike) -> Tensor:
        """``(1, seq)`` input ids on the model's input device; refuses empty or over-long prompts."""
        if isinstance(prompt, str):
            if prompt == "":
                raise PromptError("the prompt is empty")
            self._check_prompt_length(prompt)  # O(1) or O(context): a huge text is refused before tokenizing it
            as_str(prompt, "the prompt", error=PromptError)  # a lone surrogate would fail deep in the tokenizer
            ids = self.tokenizer(prompt, add_special_tokens=True, return_tensors="pt")["input_ids"][0]
        elif isinstance(prompt, Tensor):
            ids = prompt.reshape(-1) if prompt.ndim <= 1 or prompt.shape[0] == 1 else None
            if ids is None:
                raise PromptError(f"pass one sequence of token ids, got a tensor of shape {tuple(prompt.shape)}")
            if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
                raise PromptError(f"token ids must be integers, got a tensor of {ids.dtype}")
            ids = ids.long().cpu()
        elif isinstance(prompt, (list, tuple)):
            bad = next((t for t in prompt if not is_int_like(t)), None)
            if bad is not None:
                raise PromptError(f"token ids must be a list of ints, got {bad!r} ({type(bad).__name__}) in it")
            if self.max_context is not None and len(prompt) > self.max_context:
                raise PromptError(f"the prompt has {len(prompt)} tokens, more than the model's context of "
                                  f"{self.max_context}")
            try:
                ids = torch.tensor([int(t) for t in prompt], dtype=torch.long)
            except (OverflowError, RuntimeError, ValueError):
                raise PromptError(f"token ids must fit in int64; got {max(prompt, key=abs)!r}") from None
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

    def _check_prompt_length(self, prompt: str) -> None:
        """Refuse a text that cannot fit the context without tokenizing all of it (2M characters take seconds):
        first by its length alone, then, for a long one, by tokenizing only a prefix of ``8 x context`` chars."""
        ctx = self.max_context
        if ctx is None:
            return
        if len(prompt) > ctx * MAX_CHARS_PER_TOKEN:
            raise PromptError(f"the prompt has {len(prompt):,} characters: more than {MAX_CHARS_PER_TOKEN} per token "
                              f"of the model's {ctx:,}-token context can hold")
        head_chars = 8 * ctx
        if len(prompt) > head_chars:
            head = as_str(prompt[:head_chars], "the prompt", error=PromptError)
            n = len(self.tokenizer(head, add_special_tokens=False)["input_ids"])
            if n > ctx:
                raise PromptError(f"the prompt has {len(prompt):,} characters and its first {head_chars:,} alone are "
                                  f"{n:,} tokens, more than the model's context of {ctx:,}")

    def token_strings(self, ids: Sequence[int] | Tensor) -> list[str]:
        return readable_tokens(self.tokenizer, ids.tolist() if isinstance(ids, Tensor) else ids)

    # ------------------------------------------------------------------------------------------ steering
    @contextmanager
    def steering(self, steering: SteeringLike, *, prompt_len: int | None = None,
                 max_len: int | None = None) -> Iterator[None]:
        """Steer every forward of ``self.model`` that this thread runs inside the block; hooks go on every exit path.

        Positions mean what they mean in :meth:`run` and :meth:`generate`: a forward that starts without a KV cache
        takes its input as the prompt (``positions=[-1]`` is its last token), decoding steps under a KV cache get
        their true absolute positions, and ``"generated"`` edits exactly the tokens after the prompt (so inside
        ``self.model.generate(...)`` only the new ones). ``prompt_len`` fixes the prompt's length instead of taking
        it from each fresh forward. ``max_len`` bounds non-negative positions (default: the model's context).
        Forwards started by other threads are not steered (see the module docstring); the block holds
        :attr:`lock`, so the package's other passes wait for it.
        """
        edits = as_edits(steering)
        plen = as_optional_int(prompt_len, "prompt_len", error=SteeringError, min=1)
        mlen = as_optional_int(max_len, "max_len", error=SteeringError, min=1)
        if mlen is None:
            mlen = self.max_context if plen is None else max(plen, self.max_context or plen)
        with self._lock:
            resolved = resolve_edits(edits, self.saes, self.n_layers, plen, max_len=mlen)
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
        top_n = as_int(top_n, "top_n", min=1)
        as_callable(cancel, "cancel")
        return_residuals = as_bool(return_residuals, "return_residuals")
        self._check_budget(layer_list)
        final: dict[str, Tensor] = {}
        with self._lock:
            resolved = resolve_edits(edits, self.saes, self.n_layers, seq)
            with residual_hooks(self.layers, capture=layer_list, edits=resolved, prompt_len=seq,
                                cancel=cancel) as session, self._final_hidden(final):
                out = self._forward(ids, last_only=self._norm is not None)
            del resolved
            lazy = out.logits.shape[1] != seq
            if lazy and "h" not in final:
                raise RuntimeError("internal error: the model computed only the last logits but its final hidden "
                                   "states were not captured")
            logits = out.logits[0].float()
            captured = session.captured
            # Layer by layer through the bank (resident layers first, then load, encode, release, next): the
            # default layers=None stays within sae_cache_bytes whatever the release's size.
            codes = self.saes.map(layer_list, lambda n, sae: self._encode_layer(n, sae, captured[n][0]))
            residuals = ({n: captured[n][0].float().cpu() for n in layer_list} if return_residuals else None)
        top_n = min(top_n, logits.shape[-1])
        top_l, top_i = logits.topk(top_n, dim=-1)
        top_p = (top_l - _row_logsumexp(logits)).exp().cpu()
        top_i = top_i.cpu()
        if lazy:
            # only the last position was projected onto the vocabulary; the others are projected when first read
            head = self.model.get_output_embeddings()
            nxt = NextTokens(final["h"], head, top_n, top_i[-1], top_p[-1])
            next_ids = next_probs = None
        else:
            nxt, next_ids, next_probs = None, top_i, top_p
        tokens = self.token_strings(ids[0])
        return Trace(
            token_ids=ids[0].cpu(), tokens=tokens, layers=codes, next_ids_=next_ids, next_probs_=next_probs,
            logits_last=logits[-1].cpu(), steering=edits, next_source=nxt,
            prompt=prompt if isinstance(prompt, str) else None, residuals=residuals,
            meta={"latency_s": time.perf_counter() - t0, "model": self.name}, token_decoder=self.token_strings,
        )

    @property
    def _norm(self) -> Any:
        """The final norm before the unembedding (its output is what the lm_head projects), when found."""
        if not hasattr(self, "_norm_module"):
            self._norm_module = None
            if self.model.get_output_embeddings() is not None:
                for m in self.model.modules():
                    if getattr(m, "layers", None) is self.layers and isinstance(getattr(m, "norm", None),
                                                                                torch.nn.Module):
                        self._norm_module = m.norm
                        break
        return self._norm_module

    @contextmanager
    def _final_hidden(self, store: dict[str, Tensor]) -> Iterator[None]:
        norm = self._norm
        if norm is None:
            yield
            return

        def grab(module: Any, args: Any, output: Any) -> None:
            h = output[0] if isinstance(output, tuple) else output
            if h.dim() == 3 and h.shape[0] == 1:
                store["h"] = h[0]

        handle = norm.register_forward_hook(grab)
        try:
            yield
        finally:
            handle.remove()

    def _forward(self, ids: Tensor, *, last_only: bool) -> Any:
        """The model's forward; with ``last_only`` only the last position's logits are computed (transformers'
        ``logits_to_keep``), when the model supports it."""
        if last_only and getattr(self, "_logits_to_keep_ok", True):
            try:
                return self.model(input_ids=ids, use_cache=False, logits_to_keep=1)
            except TypeError as exc:
                if "logits_to_keep" not in str(exc):
                    raise
                self._logits_to_keep_ok = False
        return self.model(input_ids=ids, use_cache=False)

    def _check_budget(self, layer_list: list[int]) -> None:
        """Refuse before the forward when not even one SAE layer fits the bank's budget."""
        if not layer_list or self.saes.max_bytes is None:
            return
        per = self.saes.layer_nbytes(layer_list[0])
        if per is not None and per > self.saes.max_bytes:
            raise QScopeError(f"one SAE layer needs {per / 2**20:.1f} MiB but sae_cache_bytes is "
                              f"{self.saes.max_bytes / 2**20:.1f} MiB: 0 layers fit; raise sae_cache_bytes")

    @staticmethod
    def _encode_layer(layer: int, sae: SparseAutoencoder, x: Tensor) -> LayerCodes:
        x = x if x.device == sae.device else x.to(sae.device)  # a layer placed by device_map on another device
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
        layer_list = as_int_list(layers, "layers", error=UnknownLayerError)
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
                 stop_at_eos: bool = True, monitor: Any = None, stop_above: float | None = None) -> "Generation":
        """Steered generation (and, with ``baseline=True``, the unsteered one from the same seed beside it).

        ``monitor``: score each generated token with a :class:`~qscope_widgets.monitor.Monitor`
        (``Generation.monitor_scores``); ``stop_above``: stop right after the first token scoring above it."""
        from .generation import generate

        return generate(self, prompt, steering, max_new_tokens=max_new_tokens, seed=seed, temperature=temperature,
                        top_p=top_p, on_token=on_token, baseline=baseline, stop_at_eos=stop_at_eos,
                        monitor=monitor, stop_above=stop_above)

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

    # ------------------------------------------------------------------------------------------ attribution
    def attribute(self, prompt: PromptLike, target: Any, *, position: int = -1, layers: Any = None,
                  method: str = "grad_x_act", steps: int = 8, ig_batch: int | None = None):
        """Which SAE features made the model predict ``target`` at ``position``? (Sparse-feature attribution.)

        ``target``: a token (string of exactly one token, or id) whose logit is the metric; a pair ``(a, b)`` for
        the logit difference ``a - b``; or a callable on that position's ``(vocab,)`` logits returning a scalar.
        ``layers``: SAE layers to attribute (default all; their SAEs pass through the bank one at a time).
        ``method``: ``"grad_x_act"`` (one forward + one backward) or ``"ig"`` (integrated gradients, ``steps``
        points per layer, run ``ig_batch`` steps per forward + backward; None: as many as a 1 GiB activation budget
        holds). Each node's attribution estimates ``metric(clean) - metric(node ablated)``. Returns an
        :class:`~qscope_widgets.attribution.Attribution` (``.to_dataframe()``, ``.verify()``, ``.graph()``).
        """
        from .attribution import attribute

        return attribute(self, prompt, target, position=position, layers=layers, method=method, steps=steps,
                         ig_batch=ig_batch)

    def attribution_view(self, prompt: str = "", target: Any = "", **kwargs: Any):
        """The live attribution view (token heatmap + attribution grid, ranked nodes, graph, "verify") of
        ``target`` at the selected token (else the last) of ``prompt``: an
        :class:`~qscope_widgets.widgets.AttributionView`."""
        from .widgets import AttributionView

        return AttributionView(self, prompt, target, **kwargs)

    # ------------------------------------------------------------------------------------------ contrast, monitors
    def contrast(self, a: Any, b: Any, *, layers: Any = None, by: str = "rate", skip_first: bool = True,
                 **kwargs: Any):
        """Features that fire more on ``a`` than on ``b`` (each a prompt or a collection of texts), ranked by
        ``difference``: a DataFrame (see :func:`qscope_widgets.contrast.contrast`)."""
        from .contrast import contrast

        return contrast(self, a, b, layers=layers, by=by, skip_first=skip_first, **kwargs)

    def monitor(self, features: Any, *, reduce: str = "max", **kwargs: Any):
        """A :class:`~qscope_widgets.monitor.Monitor` scoring text with ``features``: ``(layer, feature)`` pairs or
        the head of a :meth:`contrast` DataFrame."""
        from .monitor import Monitor

        return Monitor(self, features, reduce=reduce, **kwargs)

    # ------------------------------------------------------------------------------------------ measurement
    def steering_eval(self, prompts: Any, edits: SteeringLike, **kwargs: Any):
        """Steer ``edits`` on ``prompts`` beside same-norm controls and measure effect and fluency: a tidy
        DataFrame with ``.summary()`` and ``.plot_effect()`` (see :mod:`qscope_widgets.steering_eval`)."""
        from .steering_eval import steering_eval

        return steering_eval(self, prompts, edits, **kwargs)

    # ------------------------------------------------------------------------------------------ compare view
    def compare(self, a: str = "", b: str = "", *, layer: int | None = None, **kwargs: Any):
        """The compare view: prompts ``a`` and ``b`` coloured by a contrast feature, the features of ``layer``
        ranked by :meth:`contrast`, and a pin per feature with steering presets
        (:class:`~qscope_widgets.widgets.compare_panel.CompareView`)."""
        from .widgets import CompareView

        return CompareView(self, a, b, layer=layer, **kwargs)
