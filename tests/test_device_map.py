"""Issue 15 item 6: ``device_map="auto"`` goes to accelerate, and the hook path works on a model split across devices.

On this CPU-only machine the split is accelerate's offload: a ``max_memory`` budget keeps some decoder layers on
the CPU and offloads the rest to disk (weights on ``meta``, streamed in by accelerate's own hooks at run time).
Captures, every steering mode, generation and a ``with scope.steering`` block must give exactly what the same
weights give undispatched.
"""

import pytest
import torch

from qscope_widgets import Scope, SteeringEdit

from conftest import hook_snapshot, make_qwen35, make_saes, write_release_folder

pytest.importorskip("accelerate")

PROMPT = "The quick brown fox jumps over the lazy dog"
EDITS = [SteeringEdit(1, 5, 30.0), SteeringEdit(2, 9, 3.0, mode="clamp"), SteeringEdit(3, 7, 1.0, mode="ablate"),
         SteeringEdit(0, 11, -8.0, positions=[-1])]


@pytest.fixture(scope="module")
def split(tmp_path_factory, tokenizer):
    """(dispatched scope, reference scope) over the same weights and SAEs."""
    root = tmp_path_factory.mktemp("device_map")
    model = make_qwen35(len(tokenizer), seed=3)
    model.save_pretrained(root / "m")
    tokenizer.save_pretrained(root / "m")
    folder = write_release_folder(root / "rel", make_saes(64, range(4), seed=1), k=8)
    nbytes = sum(p.numel() * p.element_size() for p in model.parameters())
    dispatched = Scope.from_pretrained(
        str(root / "m"), saes=str(folder), device_map="auto", dtype="float32",
        model_kwargs={"max_memory": {"cpu": int(nbytes * 0.7), "disk": 10**10}, "offload_folder": str(root / "off")})
    return dispatched, Scope(model, tokenizer, str(folder))


def _layer_places(scope):
    """Where accelerate put each decoder layer: the entry of ``hf_device_map`` with the longest matching prefix."""
    dm = scope.model.hf_device_map
    out = {}
    for n in range(scope.n_layers):
        name = f"model.layers.{n}"
        keys = [k for k in dm if k == "" or name == k or name.startswith(k + ".")]
        out[n] = dm[max(keys, key=len)]
    return out


def test_device_map_auto_reaches_accelerate_and_splits_the_layers(split):
    dispatched, _ = split
    places = _layer_places(dispatched)
    assert "cpu" in places.values() and "disk" in places.values(), places
    assert any(p.device.type == "meta" for p in dispatched.layers[3].parameters()), "layer 3 is offloaded"
    assert dispatched.device.type == "cpu"


def test_captures_and_every_steering_mode_match_the_undispatched_model(split):
    dispatched, ref = split
    before = hook_snapshot(dispatched)
    for steering in (None, EDITS):
        a = ref.run(PROMPT, steering=steering, return_residuals=True)
        b = dispatched.run(PROMPT, steering=steering, return_residuals=True)
        torch.testing.assert_close(b.logits_last, a.logits_last, rtol=1e-5, atol=1e-5)
        for n in range(4):
            torch.testing.assert_close(b.residuals[n], a.residuals[n], rtol=1e-5, atol=1e-5)
            assert torch.equal(b.layers[n].ids, a.layers[n].ids)
    assert not torch.allclose(ref.run(PROMPT).logits_last, ref.run(PROMPT, steering=EDITS).logits_last)
    assert hook_snapshot(dispatched) == before, "our hooks are gone, accelerate's stay"
    assert all(hasattr(layer, "_hf_hook") for layer in dispatched.layers)


def test_generation_and_a_steering_block_match_the_undispatched_model(split):
    dispatched, ref = split
    want = ref.generate(PROMPT, EDITS[:1], max_new_tokens=5, stop_at_eos=False)
    got = dispatched.generate(PROMPT, EDITS[:1], max_new_tokens=5, stop_at_eos=False)
    assert got.token_ids == want.token_ids and got.baseline_token_ids == want.baseline_token_ids
    ids = dispatched.tokenize(PROMPT)
    edit = [SteeringEdit(1, 5, 30.0, positions="generated")]
    outs = []
    for scope in (ref, dispatched):
        with scope.steering(edit), torch.inference_mode():
            outs.append(scope.model.generate(ids, max_new_tokens=5, do_sample=False, pad_token_id=0)[0].tolist())
    assert outs[0] == outs[1]
    assert outs[1][ids.shape[1]:] == ref.generate(PROMPT, edit, max_new_tokens=5, baseline=False,
                                                   stop_at_eos=False).token_ids


def test_a_fully_offloaded_model_takes_its_inputs_on_the_execution_device(tmp_path, tokenizer, sae_folder):
    model = make_qwen35(len(tokenizer))
    model.save_pretrained(tmp_path / "m")
    tokenizer.save_pretrained(tmp_path / "m")
    scope = Scope.from_pretrained(str(tmp_path / "m"), saes=str(sae_folder), device_map="auto", dtype="float32",
                                  model_kwargs={"max_memory": {"cpu": 1000, "disk": 10**10},
                                                "offload_folder": str(tmp_path / "off")})
    assert scope.model.get_input_embeddings().weight.device.type == "meta"
    assert scope.device.type == "cpu"
    ref = Scope(model, tokenizer, str(sae_folder))
    torch.testing.assert_close(scope.run(PROMPT, layers=[1], steering=EDITS[:1]).logits_last,
                               ref.run(PROMPT, layers=[1], steering=EDITS[:1]).logits_last, rtol=1e-5, atol=1e-5)


def test_sae_evaluation_on_the_split_model_matches_the_undispatched_one(split):
    from qscope_widgets.evaluation import evaluate_sae, evaluate_saes

    dispatched, ref = split
    ids = dispatched.tokenize(PROMPT + " " + PROMPT)[0]
    windows = torch.stack([ids[:8], ids[4:12]])
    for layer in (1, 3):  # 3 is offloaded (weights on meta, streamed in by accelerate)
        a, b = evaluate_sae(ref, windows, layer), evaluate_sae(dispatched, windows, layer)
        assert b == pytest.approx(a, rel=1e-4, abs=1e-5)
    rows_a = evaluate_saes(ref, windows, [1, 3]).rows
    rows_b = evaluate_saes(dispatched, windows, [1, 3]).rows
    for a, b in zip(rows_a, rows_b):
        assert b == pytest.approx(a, rel=1e-4, abs=1e-5)


def test_sae_inputs_go_to_the_sae_device_and_reconstructions_come_back():
    """The routing evaluate_sae(s) use when a layer's residual lives on another device than the SAE (device_map
    over several GPUs): simulated with an SAE that says it lives on ``meta``."""
    from qscope_widgets.evaluation import splice, to_sae

    class MetaSAE:
        device, dtype = torch.device("meta"), torch.float16
        seen = []

        def __call__(self, x):
            self.seen.append((x.device.type, x.dtype))
            return torch.ones(x.shape, dtype=self.dtype)  # "computed on its device", handed back

    sae, h = MetaSAE(), torch.randn(2, 3, 4, dtype=torch.float32)
    x = to_sae(h, sae)
    assert (x.device.type, x.dtype) == ("meta", torch.float16)
    out = splice(h, sae)
    assert sae.seen == [("meta", torch.float16)]
    assert (out.device, out.dtype, out.shape) == (h.device, h.dtype, h.shape)

