"""The bank loads layers only when asked and never holds more bytes than its budget."""

import pytest
import torch

from qscope_widgets.errors import QScopeError, UnknownLayerError
from qscope_widgets.sae import SAEBank

from conftest import make_saes, write_release_folder


@pytest.fixture
def folder(tmp_path):
    return write_release_folder(tmp_path / "rel", make_saes(16, range(6), d_sae=128, k=4), k=4)


def test_lazy_and_bounded_lru(folder):
    one = make_saes(16, [0], d_sae=128, k=4)[0].nbytes()
    bank = SAEBank(str(folder), d_model=16, max_bytes=int(2.5 * one))
    assert bank.loaded_layers == [] and bank.loads == 0, "nothing loads up front"
    for layer in [0, 1, 2, 1, 3, 4, 5, 0]:
        bank.get(layer)
        assert bank.bytes_loaded() <= bank.max_bytes
        assert len(bank.loaded_layers) <= 2
    assert bank.loaded_layers == [5, 0], "least recently used went first"
    assert bank.loads == 8 - 1, "layer 1 was still cached the second time"
    bank.get(0)
    assert bank.loads == 7


def test_budget_smaller_than_one_layer_is_a_clear_error(folder):
    bank = SAEBank(str(folder), d_model=16, max_bytes=1000)
    with pytest.raises(QScopeError, match="budget"):
        bank.get(0)
    assert bank.loaded_layers == []


def test_unknown_layer(folder):
    bank = SAEBank(str(folder), d_model=16)
    with pytest.raises(UnknownLayerError, match="layer 9"):
        bank.get(9)
    with pytest.raises(UnknownLayerError):
        bank.get("3")  # type: ignore[arg-type]
    assert 3 in bank and 9 not in bank


def test_a_layer_first_loaded_inside_a_run_has_ordinary_weights(scope):
    """Loading happens outside inference mode, so later autograd-tracked maths on the weights works."""
    import torch

    scope.saes.evict()
    scope.run("load the layer inside inference mode", layers=[2])
    sae = scope.sae(2)
    assert not sae.W_dec.is_inference()
    direction = torch.ones(scope.d_model) @ sae.W_dec  # raised "Inference tensors cannot be saved for backward"
    assert direction.shape == (sae.d_sae,)


# ------------------------------------------------------------------------------------- issue 10.3: every path
def test_run_with_every_layer_stays_within_the_bank_budget(qwen35, tokenizer, sae_folder):
    """layers=None on a release larger than sae_cache_bytes: layers stream through the bank, the peak of live SAE
    bytes (resident or still referenced anywhere) never passes the budget, and the codes equal an unbounded run."""
    from qscope_widgets import Scope

    free = Scope(qwen35, tokenizer, str(sae_folder))
    one = free.sae(0).nbytes()
    budget = int(2.5 * one)
    scope = Scope(qwen35, tokenizer, str(sae_folder), sae_cache_bytes=budget)
    assert scope.saes.layers_that_fit() == 2, "known from config.json before any layer is read"
    prompt = "every layer of a release larger than the budget"
    for _ in range(2):
        tr = scope.run(prompt)
        assert sorted(tr.layers) == [0, 1, 2, 3]
        assert scope.saes.peak_live_bytes <= budget, (scope.saes.peak_live_bytes, budget)
        assert len(scope.saes.loaded_layers) <= 2
    ref = free.run(prompt)
    for n in range(4):
        assert torch.equal(tr.layers[n].ids, ref.layers[n].ids)
    loads = scope.saes.loads
    scope.run(prompt)
    assert scope.saes.loads - loads == 2, "the two resident layers are encoded first, not reloaded"


def test_peak_tracker_sees_saes_a_caller_still_holds(sae_folder):
    """The control for the test above: holding every layer at once (what run did before) passes the budget, and
    the tracker reports it even though the bank itself evicted them."""
    bank = SAEBank(str(sae_folder), d_model=64)
    one = bank.get(0).nbytes()
    bank = SAEBank(str(sae_folder), d_model=64, max_bytes=int(2.5 * one))
    held = {n: bank.get(n) for n in bank.layers}
    assert bank.bytes_loaded() <= bank.max_bytes
    assert bank.peak_live_bytes == 4 * one > bank.max_bytes
    del held
    assert bank.live_bytes() == bank.bytes_loaded()


def test_map_visits_resident_layers_first_and_keeps_the_budget(sae_folder):
    bank = SAEBank(str(sae_folder), d_model=64)
    one = bank.get(0).nbytes()
    bank = SAEBank(str(sae_folder), d_model=64, max_bytes=int(1.5 * one))
    bank.get(3)
    seen = []
    out = bank.map([0, 1, 2, 3], lambda n, sae: seen.append(n) or sae.d_sae)
    assert seen == [3, 0, 1, 2] and list(out) == [0, 1, 2, 3]
    assert bank.peak_live_bytes <= bank.max_bytes
    with pytest.raises(UnknownLayerError, match="layer 7"):
        bank.map([7], lambda n, sae: None)


def test_a_budget_below_one_layer_is_refused_before_the_forward(qwen35, tokenizer, sae_folder):
    from qscope_widgets import Scope

    scope = Scope(qwen35, tokenizer, str(sae_folder), sae_cache_bytes=1000)
    assert scope.saes.layers_that_fit() == 0
    with pytest.raises(QScopeError, match="0 layers fit"):
        scope.run("too small a budget")
    assert scope.saes.loads == 0
