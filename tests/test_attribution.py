"""Attribution: the splice leaves the forward untouched, estimates match finite differences and (where the model
is linear in the node) exact ablations, hooks and weight flags survive errors, and bad targets are refused."""

import json

import pytest
import torch
from torch import nn

from conftest import hook_snapshot, make_qwen35, make_saes
from qscope_widgets import Scope, SteeringEdit
from qscope_widgets.attribution import Attribution, AttributionError, TargetError
from qscope_widgets.attribution.splice import sae_splice
from qscope_widgets.hooks import patch_residual
from qscope_widgets.errors import QScopeError

PROMPT = "The quick brown fox jumps over the lazy dog"


@pytest.fixture(scope="module")
def scope64(tokenizer):
    """A float64 Qwen3.5 (Gated DeltaNet + full attention) with float64 SAEs on all 4 layers. (Its RMSNorms still
    compute in float32, so central differences agree with autograd to ~1e-4 relative, not 1e-8.)"""
    model = make_qwen35(len(tokenizer), seed=1).double()
    saes = {n: s.double() for n, s in make_saes(64, range(4), seed=1).items()}
    return Scope(model, tokenizer, saes, sae_dtype="float64")


def metric_with(scope, ids, target_id, layer, fn):
    with patch_residual(scope.layers, layer, fn), torch.inference_mode():
        return float(scope.model(input_ids=ids, use_cache=False).logits[0, -1, target_id])


def onehot(seq, p, like):
    m = torch.zeros(seq, dtype=like.dtype)
    m[p] = 1
    return m[None, :, None]


def test_spliced_forward_equals_the_plain_forward_bit_for_bit(scope):
    ids = scope.tokenize(PROMPT)
    with torch.inference_mode():
        plain = scope.model(input_ids=ids, use_cache=False).logits
    saes = {n: scope.sae(n) for n in scope.sae_layers}
    with torch.enable_grad(), sae_splice(scope.layers, saes) as nodes:
        spliced = scope.model(input_ids=ids, use_cache=False).logits
    assert torch.equal(spliced.detach(), plain)
    assert sorted(nodes) == scope.sae_layers
    for n, nd in nodes.items():  # the splice's parts are x_hat + err == h
        x_hat = saes[n].decode_sparse(nd.ids, nd.clean_values)
        assert nd.err.requires_grad and nd.values.requires_grad
        assert torch.allclose(x_hat + nd.clean_err, x_hat + nd.err.detach())


def test_feature_and_error_attributions_match_finite_differences(scope64):
    s = scope64
    a = s.attribute(PROMPT, " the")
    target = a.target.tokens[0]
    ids = a.token_ids[None]
    seq = ids.shape[1]
    checked = {"feature": 0, "error": 0}
    df = a.to_dataframe()
    for kind in ("feature", "error"):
        for r in df[df["kind"] == kind].head(6).itertuples():
            if kind == "feature":
                vec = s.sae(r.layer).decoder_direction(r.feature).double()
                scale = r.activation
            else:
                h = s.residuals(ids, layers=[r.layer])[r.layer][0, r.position]  # float64, as the model runs
                vec = h - s.sae(r.layer)(h[None])[0]
                scale = 1.0
            eps = 1e-3
            up = metric_with(s, ids, target, r.layer, lambda h: h + eps * onehot(seq, r.position, h) * vec)
            dn = metric_with(s, ids, target, r.layer, lambda h: h - eps * onehot(seq, r.position, h) * vec)
            fd = (up - dn) / (2 * eps) * scale
            assert fd == pytest.approx(r.attribution, rel=2e-3, abs=1e-6), (kind, r.layer, r.position, r.feature)
            checked[kind] += 1
    assert checked == {"feature": 6, "error": 6}


def test_exact_ablation_equals_attribution_where_the_model_is_linear_in_the_node(scope64, monkeypatch):
    """Without the final norm the logits are linear in the last layer's residual: ablating a last-layer feature
    changes the metric by exactly activation x gradient."""
    s = scope64
    monkeypatch.setattr(s.model.model, "norm", nn.Identity())
    last = max(s.sae_layers)
    a = s.attribute(PROMPT, (" the", " a"), layers=[last])
    v = a.verify(n=10)
    assert len(v.table) == 10
    torch.testing.assert_close(torch.tensor(v.table["true_effect"].to_numpy(float)),
                               torch.tensor(v.table["estimate"].to_numpy(float)), rtol=1e-5, atol=1e-6)
    assert v.spearman == pytest.approx(1.0)
    # integrated gradients too: on a linear path the mean gradient is the gradient (no sign, baseline or error-term
    # slip in the IG bookkeeping), so IG equals grad_x_act and the exact ablation here
    ig = s.attribute(PROMPT, (" the", " a"), layers=[last], method="ig", steps=4)
    torch.testing.assert_close(ig.nodes[last]["attr"], a.nodes[last]["attr"], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(ig.nodes[last]["err_attr"], a.nodes[last]["err_attr"], rtol=1e-5, atol=1e-7)


def test_an_earlier_layers_estimate_is_not_exact_but_verify_runs_the_real_ablation(scope64):
    s = scope64
    a = s.attribute(PROMPT, " the", layers=[0])
    v = a.verify(n=5)
    r = v.table.iloc[0]
    assert r["true_effect"] == pytest.approx(a.ablation_effect(int(r.layer), int(r.position), int(r.feature)))
    with s.steering(SteeringEdit(int(r.layer), int(r.feature), 1.0, "ablate", (int(r.position),)),
                    prompt_len=len(a.token_ids)), torch.inference_mode():
        abl = float(s.model(input_ids=a.token_ids[None], use_cache=False).logits[0, -1, a.target.tokens[0]])
    assert r["true_effect"] == pytest.approx(a.metric - abl)


def test_integrated_gradients_are_complete_along_the_layer_path(scope64):
    """IG's attributions of one layer sum to metric(clean) - metric(layer output replaced by b_dec)."""
    s = scope64
    layer = 1
    a = s.attribute(PROMPT, " the", layers=[layer], method="ig", steps=64)
    total = a.by_layer().loc[layer, "total"]
    b_dec = s.sae(layer).b_dec.double()
    end = metric_with(s, a.token_ids[None], a.target.tokens[0], layer, lambda h: b_dec.expand_as(h).clone())
    assert total == pytest.approx(a.metric - end, rel=2e-3)
    g = s.attribute(PROMPT, " the", layers=[layer])
    assert not torch.allclose(torch.tensor(g.to_dataframe()["attribution"].sum()), torch.tensor(total))


def spliced_reference(scope, prompt, target_id, layers):
    """The textbook pass (all SAEs spliced at once, gradients of the code and error leaves), for comparison."""
    from qscope_widgets.attribution.splice import frozen_weights

    ids = scope.tokenize(prompt)
    saes = {n: scope.sae(n) for n in layers}
    with frozen_weights(scope.model), torch.enable_grad():
        with sae_splice(scope.layers, saes) as nodes:
            logits = scope.model(input_ids=ids, use_cache=False).logits[0, -1].float()
        leaves = [t for n in layers for t in (nodes[n].values, nodes[n].err)]
        grads = torch.autograd.grad(logits[target_id], leaves)
    out = {}
    for i, n in enumerate(layers):
        nd = nodes[n]
        out[n] = (nd.ids[0], (nd.clean_values[0] * grads[2 * i][0]).detach(),
                  (nd.clean_err[0] * grads[2 * i + 1][0]).sum(-1).detach())
    return logits.detach(), out


def test_grad_x_act_equals_the_spliced_pass_and_its_logits_are_the_clean_ones(scope64):
    """attribute() differentiates the plain model at the residuals and applies the SAEs afterwards: the same
    numbers as splicing every SAE into the pass, and its logits (the predictions, the metric) are the plain
    forward's, bit for bit, without a second forward."""
    s = scope64
    a = s.attribute(PROMPT, " the")
    logits, ref = spliced_reference(s, PROMPT, a.target.tokens[0], a.layers)
    with torch.inference_mode():
        plain = s.model(input_ids=s.tokenize(PROMPT), use_cache=False).logits[0, -1].float()
    assert a.metric == float(plain[a.target.tokens[0]]) == float(logits[a.target.tokens[0]])
    assert [p[1] for p in a.predictions] == plain.topk(10).indices.tolist()
    for n in a.layers:
        ids, attr, err_attr = ref[n]
        assert torch.equal(a.nodes[n]["ids"], ids)
        torch.testing.assert_close(a.nodes[n]["attr"], attr.float(), rtol=1e-6, atol=1e-9)
        torch.testing.assert_close(a.nodes[n]["err_attr"], err_attr.float(), rtol=1e-6, atol=1e-9)
        assert a.nodes[n]["attr"].abs().max() > 0


def test_a_bank_budget_smaller_than_all_layers_gives_the_same_numbers_within_the_budget(tokenizer, qwen35):
    saes = make_saes(64, range(4))
    full = Scope(qwen35, tokenizer, {n: s for n, s in saes.items()})
    one = saes[0].nbytes()
    tight = Scope(qwen35, tokenizer, {n: s for n, s in saes.items()}, sae_cache_bytes=int(1.5 * one))
    a, b = full.attribute(PROMPT, " the"), tight.attribute(PROMPT, " the")
    da, db = a.to_dataframe(), b.to_dataframe()
    torch.testing.assert_close(torch.tensor(da["attribution"].to_numpy()), torch.tensor(db["attribution"].to_numpy()),
                               rtol=1e-5, atol=1e-6)
    assert tight.saes.bytes_loaded() <= tight.saes.max_bytes
    _, ref = spliced_reference(full, PROMPT, a.target.tokens[0], a.layers)
    for n in a.layers:
        torch.testing.assert_close(b.nodes[n]["attr"], ref[n][1], rtol=1e-5, atol=1e-6)


def test_position_truncates_the_prompt_and_nodes_after_it_do_not_exist(scope):
    a = scope.attribute(PROMPT, " the", position=3)
    ids = scope.tokenize(PROMPT)[0, :4]
    b = scope.attribute(ids, " the")
    assert a.position == 3 and len(a.tokens) == 4
    assert a.to_dataframe()["position"].max() == 3
    torch.testing.assert_close(torch.tensor(a.to_dataframe()["attribution"].to_numpy()),
                               torch.tensor(b.to_dataframe()["attribution"].to_numpy()))


def test_tables_totals_and_error_share_are_consistent(scope):
    a = scope.attribute(PROMPT, " the")
    df = a.to_dataframe()
    assert list(df.columns) == ["layer", "position", "token", "feature", "label", "activation", "attribution", "kind"]
    assert set(df["kind"]) == {"feature", "error"}
    assert (df[df["kind"] == "error"]["feature"] == -1).all()
    assert (df["attribution"].abs().diff().dropna() <= 1e-12).all(), "sorted by |attribution|"
    seq, layers = len(a.tokens), len(a.layers)
    assert (df["kind"] == "error").sum() == seq * layers
    assert a.by_layer()["total"].sum() == pytest.approx(df["attribution"].sum(), rel=1e-5, abs=1e-6)
    assert a.by_position()["total"].sum() == pytest.approx(df["attribution"].sum(), rel=1e-5, abs=1e-6)
    err = df[df["kind"] == "error"]["attribution"].abs().sum()
    assert a.error_share == pytest.approx(err / df["attribution"].abs().sum(), rel=1e-5)
    assert len(a.top(5, kind="feature")) == 5 and (a.top(5, kind="feature")["kind"] == "feature").all()
    with pytest.raises(AttributionError, match="n must be"):
        a.top(0)


def test_weights_get_no_gradients_and_their_flags_are_restored(scope):
    flags = [p.requires_grad for p in scope.model.parameters()]
    scope.attribute(PROMPT, " the")
    scope.attribute(PROMPT, " the", method="ig", steps=2)
    assert [p.requires_grad for p in scope.model.parameters()] == flags
    assert all(p.grad is None for p in scope.model.parameters())


def test_hooks_and_weight_flags_are_restored_after_an_error_mid_pass(scope):
    hooks = hook_snapshot(scope)
    flags = [p.requires_grad for p in scope.model.parameters()]
    calls = {"n": 0}

    def flaky(logits):  # passes the up-front check, then fails inside the spliced pass
        calls["n"] += 1
        if calls["n"] > 1:
            raise RuntimeError("boom")
        return logits[5]

    with pytest.raises(RuntimeError, match="boom"):
        scope.attribute(PROMPT, flaky)
    assert hook_snapshot(scope) == hooks
    assert [p.requires_grad for p in scope.model.parameters()] == flags
    calls["n"] = 0
    with pytest.raises(RuntimeError, match="boom"):
        scope.attribute(PROMPT, flaky, method="ig", steps=2)  # passes the probe, fails inside the IG pass
    assert hook_snapshot(scope) == hooks

    def bomb(module, args, output):  # an error inside the forward, while attribution's hooks are on
        raise RuntimeError("inside the forward")

    for method in ("grad_x_act", "ig"):
        handle = scope.layers[2].register_forward_hook(bomb)
        try:
            with pytest.raises(RuntimeError, match="inside the forward"):
                scope.attribute(PROMPT, " the", method=method, steps=2)
        finally:
            handle.remove()
        assert hook_snapshot(scope) == hooks
        assert [p.requires_grad for p in scope.model.parameters()] == flags
    sae = scope.sae(2)
    orig = sae.encode_sparse
    sae.encode_sparse = lambda x: (_ for _ in ()).throw(RuntimeError("inside an encode"))
    try:
        with pytest.raises(RuntimeError, match="inside an encode"):
            scope.attribute(PROMPT, " the")
    finally:
        del sae.encode_sparse
    assert sae.encode_sparse == orig
    assert hook_snapshot(scope) == hooks
    assert [p.requires_grad for p in scope.model.parameters()] == flags
    ok = scope.attribute(PROMPT, " the")  # the session stays usable
    assert isinstance(ok, Attribution)


@pytest.mark.parametrize("bad, match", [
    (" quick brown", "not one"),
    ("", "empty"),
    (10**6, "out of the vocabulary"),
    (-1, "out of the vocabulary"),
    (True, "bool"),
    (1.5, "float"),
    ((" the", " fox", " dog"), "3 items"),
    ((" the", " the"), "same token"),
    ((" the", 10**6), "1000000"),
    (object(), "object"),
    (lambda logits: logits[:3], "one-element"),
    (lambda logits: torch.tensor(1.0), "does not depend"),
])
def test_bad_targets_are_refused_by_name_before_any_hook(scope, bad, match):
    hooks = hook_snapshot(scope)
    with pytest.raises(TargetError, match=match) as info:
        scope.attribute(PROMPT, bad)
    assert isinstance(info.value, QScopeError)
    assert hook_snapshot(scope) == hooks


@pytest.mark.parametrize("kwargs, match", [
    ({"position": 99}, "position 99"), ({"position": "last"}, "'last'"), ({"method": "saliency"}, "'saliency'"),
    ({"steps": 0}, "steps"), ({"layers": [7]}, "layer 7"), ({"layers": []}, "empty"),
])
def test_bad_arguments_are_refused_by_name(scope, kwargs, match):
    with pytest.raises(QScopeError, match=match):
        scope.attribute(PROMPT, " the", **kwargs)


def test_graph_edges_run_forward_in_layers_and_match_a_finite_difference(scope64):
    s = scope64
    a = s.attribute(PROMPT, " the")
    g = a.graph(max_nodes=12, edge_threshold=0.0)
    nodes = g.nodes.set_index("id")
    assert len(nodes) == 13 and nodes.loc["target", "kind"] == "target"
    to_target = g.edges[g.edges["target"] == "target"].set_index("source")["weight"]
    for nid, w in to_target.items():
        assert w == pytest.approx(nodes.loc[nid, "attribution"])
    inner = g.edges[g.edges["target"] != "target"]
    assert len(inner) > 0
    assert (nodes.loc[inner["source"], "layer"].to_numpy() < nodes.loc[inner["target"], "layer"].to_numpy()).all()
    # one feature -> feature edge against a finite difference of the downstream feature's code
    ff = inner[(nodes.loc[inner["source"], "kind"].to_numpy() == "feature")
               & (nodes.loc[inner["target"], "kind"].to_numpy() == "feature")]
    e = ff.iloc[0]
    up, dn = nodes.loc[e["source"]], nodes.loc[e["target"]]
    g_dn = dn["attribution"] / dn["activation"]  # d metric / d a_D at the clean point

    def code(eps):
        edit = SteeringEdit(int(up["layer"]), int(up["feature"]), eps, "add", (int(up["position"]),))
        t = s.run(a.token_ids, layers=[int(dn["layer"])], steering=edit, top_n=1)
        c = t.layers[int(dn["layer"])]
        hit = c.ids[int(dn["position"])] == int(dn["feature"])
        return float(c.values[int(dn["position"])][hit].sum())

    eps = 1e-4
    fd = (code(eps) - code(-eps)) / (2 * eps) * up["activation"] * g_dn
    assert fd == pytest.approx(e["weight"], rel=1e-3, abs=1e-8)


def test_graph_json_has_the_documented_schema_and_a_neuronpedia_form(scope):
    a = scope.attribute(PROMPT, " the")
    g = a.graph(max_nodes=10)
    d = json.loads(g.to_json())
    assert d["schema"] == "qscope-attribution-graph-v1"
    assert {"model", "prompt_tokens", "position", "method", "target", "error_share", "nodes", "edges"} <= set(d)
    assert {"id", "layer", "position", "token", "feature", "label", "activation", "attribution", "kind"} == \
        set(d["nodes"][0])
    ids = {n["id"] for n in d["nodes"]}
    assert all(e["source"] in ids and e["target"] in ids for e in d["edges"])
    npd = json.loads(g.to_json(format="neuronpedia"))
    assert set(npd) == {"metadata", "qParams", "nodes", "links"}
    nids = {n["node_id"] for n in npd["nodes"]}
    assert sum(n["is_target_logit"] for n in npd["nodes"]) == 1
    assert all(link["source"] in nids and link["target"] in nids for link in npd["links"])
    assert g.to_svg().startswith("<svg")
    with pytest.raises(AttributionError, match="'dot'"):
        g.to_json(format="dot")
    with pytest.raises(AttributionError, match="max_nodes"):
        a.graph(max_nodes=0)


def test_an_attribution_displays_as_html_with_its_positions_totals_and_top_nodes(scope):
    import re

    a = scope.attribute(PROMPT, " the")
    page = a._repr_html_()
    assert page == __import__("qscope_widgets.html", fromlist=["x"]).attribution_html(a)
    strip = page.split('data-qscope="static-attribution"')[1].split("</div>")[0]
    values = [float(v) for v in re.findall(r'data-value="([^"]+)"', strip)]
    totals = a.by_position()["total"].to_numpy()
    assert len(values) == len(a.tokens) == len(totals)
    assert values == pytest.approx(totals, rel=1e-4, abs=1e-5)
    nodes = page.split('data-qscope="static-nodes"')[1].split("</table>")[0]
    assert nodes.count("<tr>") == 1 + 15  # header + the 15 strongest nodes
    assert a.target.description.replace("'", "&#x27;") in page and "<script" not in page


def test_integrated_gradients_in_micro_batches_equal_the_one_batch_result(scope64, monkeypatch):
    """IG's steps run in micro-batches bounded by a memory budget; any split gives the one-batch numbers."""
    from qscope_widgets.attribution import compute

    s = scope64
    one = s.attribute(PROMPT, " the", method="ig", steps=6, ig_batch=6)
    calls = []
    orig = compute.forward_logits
    monkeypatch.setattr(compute, "forward_logits", lambda sc, ids: calls.append(ids.shape[0]) or orig(sc, ids))
    for batch in (1, 4):
        calls.clear()
        split = s.attribute(PROMPT, " the", method="ig", steps=6, ig_batch=batch)
        assert calls == [1] + ([batch] * (6 // batch) + ([6 % batch] if 6 % batch else [])) * len(s.sae_layers)
        for n in s.sae_layers:
            for key in ("attr", "err_attr"):
                torch.testing.assert_close(split.nodes[n][key], one.nodes[n][key], rtol=1e-10, atol=1e-12)
    # the default batch comes from the budget: a budget of two rows' worth gives batches of 2
    seq = len(one.tokens)
    row = seq * (s.n_layers - 0) * compute.SAVED_PER_TOKEN_LAYER * s.d_model * 8
    assert compute.ig_batch_size(s, seq, 0, 6, budget=2 * row + 1) == 2
    assert compute.ig_batch_size(s, seq, 0, 6, budget=1) == 1
    assert compute.ig_batch_size(s, seq, 0, 6) == 6  # the default 1 GiB holds all six on this tiny model
    monkeypatch.setattr(compute, "IG_MEMORY_BYTES", 2 * row + 1)
    calls.clear()
    s.attribute(PROMPT, " the", method="ig", steps=6, layers=[0])
    assert calls == [1, 2, 2, 2]
    with pytest.raises(AttributionError, match="ig_batch"):
        s.attribute(PROMPT, " the", method="ig", ig_batch=0)


def test_verify_ablates_exactly_what_the_estimate_removes_the_code_with_the_error_held(scope64):
    """The estimate is d metric / d z_f x z_f with the other codes and the error term fixed; verify's ``ablate``
    edit is the same intervention: the layer's output at that position rebuilt as decode(z with z_f = 0) + err."""
    s = scope64
    a = s.attribute(PROMPT, " the", layers=[1])
    ids = a.token_ids[None]
    sae = s.sae(1)
    for r in a.top(3, kind="feature").itertuples():
        def rebuild(h, r=r):
            out = h.clone()
            x = h[0, r.position]
            codes = sae.encode_sparse(x[None])
            err = x - sae.decode_sparse(codes.ids, codes.values)[0]
            values = torch.where(codes.ids == r.feature, torch.zeros_like(codes.values), codes.values)
            out[0, r.position] = sae.decode_sparse(codes.ids, values)[0] + err
            return out

        rebuilt = metric_with(s, ids, a.target.tokens[0], 1, rebuild)
        assert a.ablation_effect(r.layer, r.position, r.feature) == pytest.approx(a.metric - rebuilt, rel=1e-9,
                                                                                   abs=1e-9)
