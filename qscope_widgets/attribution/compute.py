"""Node attribution: one forward and one backward for all layers (``grad_x_act``), or one batched forward and
backward per layer (``ig``, integrated gradients with ``steps`` points on the path).

``grad_x_act`` runs the plain model once with the residual outputs of the requested layers differentiable, takes
``g = d metric / d h`` at each of them in one backward, and only then passes the SAEs through the bank one layer at
a time (``codes, err`` from ``h``; gradients of the k active codes from their k decoder rows). That is exactly the
spliced pass's gradient (the splice passes gradients straight through, see ``splice.py``), at the cost of the
plain forward + backward + one SAE encode per layer, whatever the bank's budget. ``ig`` needs only one layer's SAE
at a time anyway.

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


def _scalar_metric(target: Target, logits: Tensor) -> Tensor:
    m = target.metric(logits)
    if not m.requires_grad:
        raise TargetError(f"the target {target.description} does not depend on the logits it is given: "
                          "nothing to attribute")
    return m


def residual_grads(scope: "Scope", ids: Tensor, target: Target,
                   layers: list[int]) -> tuple[Tensor, dict[int, Tensor], dict[int, Tensor]]:
    """One forward and one backward *without* SAEs: ``(logits, {layer: h}, {layer: g})`` with ``h`` the layer's
    residual output ``(seq, d_model)`` and ``g = d metric / d h`` (both detached; ``logits`` ``(vocab,)`` float).

    The first requested layer's output becomes a leaf (its value unchanged; the weights are frozen, so nothing
    before it is differentiated anyway); the later ones are read as they are and differentiated as inner nodes of
    the graph (``autograd.grad`` with non-leaf inputs), so the forward runs exactly the plain model's operations:
    its logits are the clean logits, bit for bit, and no second forward is needed to read them."""
    first = layers[0]
    outs: dict[int, Tensor] = {}

    def make_hook(idx: int):
        def hook(module, args, output):
            h = output[0] if isinstance(output, tuple) else output
            if idx == first or not h.requires_grad:
                h = h.detach().requires_grad_(True)
            outs[idx] = h
            return (h,) + tuple(output[1:]) if isinstance(output, tuple) else h

        return hook

    handles = [scope.layers[n].register_forward_hook(make_hook(n)) for n in layers]
    try:
        logits = forward_logits(scope, ids)
    finally:
        for h in handles:
            h.remove()
    m = _scalar_metric(target, logits[0])
    grads = torch.autograd.grad(m, [outs[n] for n in layers], allow_unused=True)
    hs = {n: outs[n].detach()[0] for n in layers}
    gs = {n: (torch.zeros_like(hs[n]) if g is None else g[0]) for n, g in zip(layers, grads)}
    return logits.detach()[0], hs, gs


GATHER_ELEMENTS = 1 << 24  # cap on the (positions, k, d_model) decoder rows gathered at once (64 MB in float32)


def layer_nodes(sae: Any, h: Tensor, g: Tensor) -> dict[str, Tensor]:
    """The nodes of one layer from its residual ``h`` and gradient ``g`` (``(seq, d_model)``): ``codes, err`` from
    ``h``; ``attribution = z_f * (W_dec[:, f] . g)`` for the k active codes only (their k decoder rows gathered,
    never a dense ``(seq, d_sae)`` product), and ``err . g``. Because the splice passes gradients straight through,
    ``d metric / d z_f = W_dec[:, f] . g`` exactly: these are the spliced pass's numbers."""
    with torch.no_grad():
        codes = sae.encode_sparse(h)
        err = h - sae.decode_sparse(codes.ids, codes.values).to(h.dtype)
        gd = g.to(sae.dtype)
        rows = sae.W_dec.T  # (d_sae, d_model), contiguous: one row per feature
        k = codes.ids.shape[-1]
        chunk = max(1, GATHER_ELEMENTS // max(1, k * h.shape[-1]))
        gz = torch.cat([torch.bmm(rows[codes.ids[i:i + chunk]], gd[i:i + chunk, :, None])[..., 0]
                        for i in range(0, h.shape[0], chunk)])
        return _pack(codes.ids, codes.values, codes.values * gz, err, (err * g).sum(-1))


def _grad_x_act(scope: "Scope", ids: Tensor, target: Target,
                layers: list[int]) -> tuple[Tensor, dict[int, dict[str, Tensor]]]:
    """One forward + one backward for every layer at once (:func:`residual_grads`), then the SAEs pass through the
    bank one layer at a time (:func:`layer_nodes`), so the bank's budget never has to hold them together.
    Returns the clean logits and the nodes."""
    logits, hs, gs = residual_grads(scope, ids, target, layers)
    out: dict[int, dict[str, Tensor]] = {}
    for n in layers:
        out[n] = layer_nodes(scope.saes.get(n), hs.pop(n), gs.pop(n))
    return logits, out


IG_MEMORY_BYTES = 1 << 30  # default budget for one IG micro-batch's saved activations
SAVED_PER_TOKEN_LAYER = 32  # d_model-sized tensors autograd keeps per token per layer (a generous estimate:
#                             norms, gates, the MLP's intermediate, attention / DeltaNet internals)


def ig_batch_size(scope: "Scope", seq: int, layer: int, steps: int, budget: int | None = None) -> int:
    """How many IG steps one forward + backward may hold: the batch's saved activations (``seq`` tokens, the
    layers from ``layer`` on, :data:`SAVED_PER_TOKEN_LAYER` ``d_model`` vectors each) within ``budget`` bytes;
    at least 1, at most ``steps``. ``budget`` defaults to :data:`IG_MEMORY_BYTES`."""
    budget = IG_MEMORY_BYTES if budget is None else budget
    elem = next(scope.model.parameters()).element_size()
    per_row = seq * (scope.n_layers - layer) * SAVED_PER_TOKEN_LAYER * scope.d_model * elem
    return max(1, min(steps, budget // max(1, per_row)))


def check_ig_batch(ig_batch: Any) -> int | None:
    if ig_batch is None:
        return None
    if isinstance(ig_batch, bool) or not isinstance(ig_batch, int) or ig_batch < 1:
        raise AttributionError(f"ig_batch must be None or a positive int, got {ig_batch!r}")
    return ig_batch


def _integrated_gradients(scope: "Scope", ids: Tensor, target: Target, layers: list[int], steps: int,
                          ig_batch: int | None = None) -> dict[int, dict[str, Tensor]]:
    """Per layer, the mean gradient over ``steps`` midpoints of the path ``alpha * layer output`` (to ``b_dec``),
    run in micro-batches of ``ig_batch`` steps (None: as many as :func:`ig_batch_size` allows): each step's row is
    independent, so the micro-batches' gradient sums add up to the one-batch result (to float rounding)."""
    alphas = (torch.arange(steps, dtype=torch.float32) + 0.5) / steps  # midpoint rule on [0, 1]
    out: dict[int, dict[str, Tensor]] = {}
    for n in layers:
        sae = scope.saes.get(n)
        size = ig_batch or ig_batch_size(scope, ids.shape[1], n, steps)
        gv_sum = ge_sum = None
        for chunk in alphas.split(size):
            with sae_splice(scope.layers, {n: sae}, alphas={n: chunk}) as nodes:
                logits = forward_logits(scope, ids.expand(len(chunk), -1))
            m = _scalar_metric(target, logits).sum()
            nd = nodes[n]
            gv, ge = torch.autograd.grad(m, [nd.values, nd.err], allow_unused=True)
            gv = torch.zeros_like(nd.values) if gv is None else gv
            ge = torch.zeros_like(nd.err) if ge is None else ge
            gv_sum = gv.sum(0) if gv_sum is None else gv_sum + gv.sum(0)
            ge_sum = ge.sum(0) if ge_sum is None else ge_sum + ge.sum(0)
            ids_n, z, e = nd.ids[0], nd.clean_values[0], nd.clean_err[0]
            del nodes, logits, m, gv, ge, nd
        out[n] = _pack(ids_n, z, z * (gv_sum / steps), e, (e * (ge_sum / steps)).sum(-1))
        del sae
    return out


def _pack(ids: Tensor, values: Tensor, attr: Tensor, err: Tensor, err_attr: Tensor) -> dict[str, Tensor]:
    return {"ids": ids.detach().cpu(), "values": values.detach().float().cpu(), "attr": attr.detach().float().cpu(),
            "err_norm": err.detach().float().norm(dim=-1).cpu(), "err_attr": err_attr.detach().float().cpu()}


def attribute(scope: "Scope", prompt: Any, target: Any, *, position: int = -1, layers: Any = None,
              method: str = "grad_x_act", steps: int = 8, ig_batch: int | None = None) -> "Attribution":
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
    ig_batch = check_ig_batch(ig_batch)
    ids = scope.tokenize(prompt)
    pos = check_position(position, ids.shape[1])
    ids = ids[:, :pos + 1]  # later tokens cannot influence this position (causal model)
    layer_list = resolve_layers(scope, layers)
    tgt = resolve_target(target, scope.tokenizer, vocab_size(scope), scope.token_strings)
    with scope.lock:
        if method == "grad_x_act":  # its own forward is the plain one: the clean logits come out of it
            with frozen_weights(scope.model), torch.inference_mode(False), torch.enable_grad():
                clean_logits, per_layer = _grad_x_act(scope, ids, tgt, layer_list)
        else:
            with torch.inference_mode(False), torch.no_grad():
                clean_logits = forward_logits(scope, ids)[0]
            if tgt.kind == "callable":  # validate the callable on real logits before the expensive passes
                probe = clean_logits.detach().clone().requires_grad_(True)
                with torch.inference_mode(False), torch.enable_grad():
                    _scalar_metric(tgt, probe)
            with frozen_weights(scope.model), torch.inference_mode(False), torch.enable_grad():
                per_layer = _integrated_gradients(scope, ids, tgt, layer_list, steps, ig_batch)
        metric = float(tgt.metric(clean_logits).detach())
    probs = clean_logits.softmax(-1)
    top_p, top_i = probs.topk(min(10, probs.shape[-1]))
    return Attribution(
        scope=scope, token_ids=ids[0].cpu(), tokens=scope.token_strings(ids[0]), position=pos, target=tgt,
        method=method, steps=steps if method == "ig" else None, layers=layer_list, nodes=per_layer, metric=metric,
        predictions=[(scope.token_strings([int(i)])[0], int(i), float(p)) for p, i in zip(top_p, top_i)],
        meta={"latency_s": time.perf_counter() - t0, "prompt": prompt if isinstance(prompt, str) else None},
    )
