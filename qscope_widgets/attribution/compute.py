"""Node attribution: one forward and one backward per group of layers (``grad_x_act``), or one batched forward and
backward per layer (``ig``, integrated gradients with ``steps`` points on the path).

When the SAEs of every requested layer fit the bank's budget they are all spliced into one pass; otherwise
``grad_x_act`` taps the residual gradients in one pass without SAEs and streams the SAEs through the bank
afterwards, one layer at a time (the same numbers: see :func:`_grad_x_act_streamed`), and ``ig`` needs only one
layer's SAE at a time anyway.

``attribution(node) = activation x d metric / d activation`` estimates ``metric(clean) - metric(node ablated)``
(ablated = the feature's code set to 0 at that layer and position, the rest of the model running normally; for an
error node, the error vector removed). Integrated gradients replace the gradient at the clean point by its mean
along the straight path from the clean layer output to ``b_dec`` (every node of that layer scaled by ``alpha``).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from .splice import forward_logits, frozen_weights, sae_splice
from .targets import AttributionError, Target, TargetError, resolve_target

if TYPE_CHECKING:
    from ..scope import Scope
    from .result import Attribution

METHODS = ("grad_x_act", "ig")


def vocab_size(scope: "Scope") -> int:
    out = scope.model.get_output_embeddings()
    if out is not None and getattr(out, "weight", None) is not None:
        return int(out.weight.shape[0])
    return int(scope.model.get_input_embeddings().weight.shape[0])


def check_position(position: Any, seq: int) -> int:
    """Absolute position of ``position`` (negative counts from the end) in a prompt of ``seq`` tokens."""
    if isinstance(position, bool) or not isinstance(position, int):
        raise AttributionError(f"position must be an int, got {position!r}")
    if not -seq <= position < seq:
        raise AttributionError(f"position {position} is outside the prompt of {seq} tokens "
                               f"(valid: {-seq}..{seq - 1})")
    return position % seq


def resolve_layers(scope: "Scope", layers: Any) -> list[int]:
    if layers is None:
        out = list(scope.sae_layers)
    elif isinstance(layers, int) and not isinstance(layers, bool):
        out = [scope.check_layer(layers)]
    else:
        try:
            out = sorted({scope.check_layer(n) for n in layers})
        except TypeError:
            raise AttributionError(f"layers must be None, an int or a list of ints, got {layers!r}") from None
    if not out:
        raise AttributionError("no layers to attribute: the scope has no SAEs" if layers is None
                               else f"layers {layers!r} is empty")
    return out


def fits_in_bank(scope: "Scope", layers: list[int]) -> bool:
    """Do the SAEs of ``layers`` fit the bank's byte budget together (always, when it is unbounded)?"""
    bank = scope.saes
    if bank.max_bytes is None:
        return True
    per_layer = bank.get(layers[0]).nbytes()  # releases use one width for every layer
    return per_layer * len(layers) <= bank.max_bytes


def _scalar_metric(target: Target, logits: Tensor) -> Tensor:
    m = target.metric(logits)
    if not m.requires_grad:
        raise TargetError(f"the target {target.description} does not depend on the logits it is given: "
                          "nothing to attribute")
    return m


def _grad_x_act(scope: "Scope", ids: Tensor, target: Target, layers: list[int]) -> dict[int, dict[str, Tensor]]:
    """All SAEs spliced at once: one forward, one backward."""
    saes = {n: scope.saes.get(n) for n in layers}
    with sae_splice(scope.layers, saes) as nodes:
        logits = forward_logits(scope, ids)
    m = _scalar_metric(target, logits[0])
    leaves = [t for n in layers for t in (nodes[n].values, nodes[n].err)]
    grads = torch.autograd.grad(m, leaves, allow_unused=True)
    out: dict[int, dict[str, Tensor]] = {}
    for i, n in enumerate(layers):
        gv, ge = grads[2 * i], grads[2 * i + 1]
        nd = nodes[n]
        gv = torch.zeros_like(nd.values) if gv is None else gv
        ge = torch.zeros_like(nd.err) if ge is None else ge
        out[n] = _pack(nd.ids[0], nd.clean_values[0], nd.clean_values[0] * gv[0], nd.clean_err[0],
                       (nd.clean_err[0] * ge[0]).sum(-1))
    return out


def _grad_x_act_streamed(scope: "Scope", ids: Tensor, target: Target,
                         layers: list[int]) -> dict[int, dict[str, Tensor]]:
    """Same numbers as :func:`_grad_x_act` when the SAEs do not all fit the bank's budget: one forward and one
    backward *without* SAEs tap each layer's residual ``h`` and its gradient ``g = d metric / d h`` (a zero-valued
    leaf added to the output), then the SAEs pass through the bank one layer at a time: ``codes, err`` from ``h``,
    ``attribution = z * (W_dec[:, f] . g)``, ``err . g``. Valid because the splice passes gradients straight
    through, so ``d metric / d z_f = W_dec[:, f] . g`` exactly."""
    taps: dict[int, Tensor] = {}
    resid: dict[int, Tensor] = {}

    def make_hook(idx: int):
        def hook(module, args, output):
            h = output[0] if isinstance(output, tuple) else output
            tap = torch.zeros((), dtype=h.dtype, device=h.device).expand_as(h).clone().requires_grad_(True)
            taps[idx], resid[idx] = tap, h.detach()
            new_h = h + tap
            return (new_h,) + tuple(output[1:]) if isinstance(output, tuple) else new_h

        return hook

    handles = [scope.layers[n].register_forward_hook(make_hook(n)) for n in layers]
    try:
        logits = forward_logits(scope, ids)
    finally:
        for h in handles:
            h.remove()
    m = _scalar_metric(target, logits[0])
    grads = torch.autograd.grad(m, [taps[n] for n in layers], allow_unused=True)
    out: dict[int, dict[str, Tensor]] = {}
    for n, g in zip(layers, grads):
        h = resid.pop(n)[0]
        g = torch.zeros_like(h) if g is None else g[0]
        sae = scope.saes.get(n)
        with torch.no_grad():
            codes = sae.encode_sparse(h)
            err = h - sae.decode_sparse(codes.ids, codes.values).to(h.dtype)
            gz = (g.to(sae.dtype) @ sae.W_dec).gather(-1, codes.ids)  # W_dec[:, f] . g for the active f
            out[n] = _pack(codes.ids, codes.values, codes.values * gz, err, (err * g).sum(-1))
        del sae
    return out


def _integrated_gradients(scope: "Scope", ids: Tensor, target: Target, layers: list[int],
                          steps: int) -> dict[int, dict[str, Tensor]]:
    alphas = (torch.arange(steps, dtype=torch.float32) + 0.5) / steps  # midpoint rule on [0, 1]
    batch = ids.expand(steps, -1)
    out: dict[int, dict[str, Tensor]] = {}
    for n in layers:
        sae = scope.saes.get(n)
        with sae_splice(scope.layers, {n: sae}, alphas={n: alphas}) as nodes:
            logits = forward_logits(scope, batch)
        m = _scalar_metric(target, logits).sum()
        nd = nodes[n]
        gv, ge = torch.autograd.grad(m, [nd.values, nd.err], allow_unused=True)
        gv = torch.zeros_like(nd.values) if gv is None else gv
        ge = torch.zeros_like(nd.err) if ge is None else ge
        z, e = nd.clean_values[0], nd.clean_err[0]
        out[n] = _pack(nd.ids[0], z, z * gv.mean(0), e, (e * ge.mean(0)).sum(-1))
        del sae, nodes, logits, m, gv, ge
    return out


def _pack(ids: Tensor, values: Tensor, attr: Tensor, err: Tensor, err_attr: Tensor) -> dict[str, Tensor]:
    return {"ids": ids.detach().cpu(), "values": values.detach().float().cpu(), "attr": attr.detach().float().cpu(),
            "err_norm": err.detach().float().norm(dim=-1).cpu(), "err_attr": err_attr.detach().float().cpu()}


def attribute(scope: "Scope", prompt: Any, target: Any, *, position: int = -1, layers: Any = None,
              method: str = "grad_x_act", steps: int = 8) -> "Attribution":
    """Attribute ``target`` at ``position`` of ``prompt`` to the SAE features (and error nodes) of ``layers``.

    See :meth:`qscope_widgets.Scope.attribute` for the arguments; every argument is checked before any hook goes
    on. Holds the scope's lock for the whole computation.
    """
    from .result import Attribution

    t0 = time.perf_counter()
    if method not in METHODS:
        raise AttributionError(f"unknown attribution method {method!r}; expected one of {', '.join(METHODS)}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise AttributionError(f"steps must be a positive int, got {steps!r}")
    ids = scope.tokenize(prompt)
    pos = check_position(position, ids.shape[1])
    ids = ids[:, :pos + 1]  # later tokens cannot influence this position (causal model)
    layer_list = resolve_layers(scope, layers)
    tgt = resolve_target(target, scope.tokenizer, vocab_size(scope), scope.token_strings)
    with scope.lock:
        with torch.inference_mode(False), torch.no_grad():
            clean_logits = forward_logits(scope, ids)[0]
        if tgt.kind == "callable":  # validate the callable on real logits before the expensive passes
            probe = clean_logits.detach().clone().requires_grad_(True)
            with torch.inference_mode(False), torch.enable_grad():
                _scalar_metric(tgt, probe)
        metric = float(tgt.metric(clean_logits).detach())
        streamed = not fits_in_bank(scope, layer_list)
        with frozen_weights(scope.model), torch.inference_mode(False), torch.enable_grad():
            if method == "grad_x_act":
                fn = _grad_x_act_streamed if streamed else _grad_x_act
                per_layer = fn(scope, ids, tgt, layer_list)
            else:
                per_layer = _integrated_gradients(scope, ids, tgt, layer_list, steps)
    probs = clean_logits.softmax(-1)
    top_p, top_i = probs.topk(min(10, probs.shape[-1]))
    return Attribution(
        scope=scope, token_ids=ids[0].cpu(), tokens=scope.token_strings(ids[0]), position=pos, target=tgt,
        method=method, steps=steps if method == "ig" else None, layers=layer_list, nodes=per_layer, metric=metric,
        predictions=[(scope.token_strings([int(i)])[0], int(i), float(p)) for p, i in zip(top_p, top_i)],
        meta={"latency_s": time.perf_counter() - t0, "streamed": streamed and method == "grad_x_act",
              "prompt": prompt if isinstance(prompt, str) else None},
    )
