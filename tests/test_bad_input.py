"""Bad input gets a clear error naming the problem, and the Scope stays usable afterwards."""

import pytest
import torch

from qscope_widgets import SteeringEdit
from qscope_widgets.errors import (FeatureIndexError, PromptError, QScopeError, SAEShapeError, SteeringError,
                                   UnknownLayerError)

from conftest import hook_snapshot, make_saes


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"prompt": ""}, PromptError, "empty"),
        ({"prompt": []}, PromptError, "no tokens"),
        ({"prompt": "x" * 2000}, PromptError, "context"),
        ({"prompt": [1, 2, 10**6]}, PromptError, "token ids"),
        ({"prompt": 3.5}, PromptError, "str or token ids"),
        ({"layers": [7]}, UnknownLayerError, "layer 7 is out of range"),
        ({"layers": [-1]}, UnknownLayerError, "out of range"),
        ({"steering": [SteeringEdit(9, 1, 1.0)]}, UnknownLayerError, "steering layer 9"),
        ({"steering": [SteeringEdit(1, 256, 1.0)]}, FeatureIndexError, "feature 256 is out of range"),
        ({"steering": [SteeringEdit(1, 2, 1.0, positions=[99])]}, SteeringError, "position 99"),
        ({"steering": ["nope"]}, SteeringError, "SteeringEdit"),
        ({"steering": [{"layer": 1, "feature": 2, "strength": float("nan")}]}, SteeringError, "finite"),
        ({"top_n": 0}, QScopeError, "top_n"),
    ],
)
def test_bad_run_input_is_named_and_scope_recovers(scope, kwargs, error, match):
    base = scope.run("The quick brown fox", layers=[3])
    hooks = hook_snapshot(scope)
    args = {"prompt": "The quick brown fox", "layers": [3], **kwargs}
    with pytest.raises(error, match=match):
        scope.run(args.pop("prompt"), **args)
    assert hook_snapshot(scope) == hooks
    again = scope.run("The quick brown fox", layers=[3])
    assert torch.equal(again.logits_last, base.logits_last)


def test_layer_without_sae(qwen3, tokenizer):
    from qscope_widgets import Scope

    scope = Scope(qwen3, tokenizer, make_saes(64, [1, 2]))
    with pytest.raises(UnknownLayerError, match="layer 0 has no SAE; layers with SAEs: \\[1, 2\\]"):
        scope.run("hi", layers=[0])
    with pytest.raises(UnknownLayerError, match="layer"):
        scope.run("hi", layers=["1"])


def test_sae_for_another_model_is_refused(qwen3, tokenizer, tmp_path):
    from qscope_widgets import Scope

    from conftest import write_release_folder

    folder = write_release_folder(tmp_path / "wrong", make_saes(32, [1], d_sae=64, k=4), k=4)
    scope = Scope(qwen3, tokenizer, str(folder))
    with pytest.raises(SAEShapeError, match="d_model=32.*d_model=64"):
        scope.run("hi", layers=[1])
    with pytest.raises(UnknownLayerError, match="another model"):
        Scope(qwen3, tokenizer, make_saes(64, [9]))


def test_feature_helpers_reject_bad_ids(scope):
    tr = scope.run("hello there", layers=[1])
    with pytest.raises(FeatureIndexError):
        tr.feature_activations(1, 10**6)
    with pytest.raises(UnknownLayerError, match="holds layers \\[1\\]"):
        tr.layer(2)
