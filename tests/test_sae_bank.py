"""The bank loads layers only when asked and never holds more bytes than its budget."""

import pytest

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
