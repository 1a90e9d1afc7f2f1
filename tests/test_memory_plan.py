"""plan(): the memory arithmetic of every release, checked by hand on the 27B."""

import pytest

import qscope_widgets as q
from qscope_widgets.errors import QScopeError
from qscope_widgets.sae.releases import RELEASES

R27 = "Qwen/SAE-Res-Qwen3.5-27B-W80K-L0_100"


def test_the_27b_on_an_80gb_gpu_by_hand():
    p = q.plan(R27, device_memory="80GB")
    assert p.sae_layer_bytes["float32"] == 4 * (2 * 5120 * 81920 + 81920 + 5120)  # 3.36 GB, the release file
    assert p.sae_layer_bytes["bfloat16"] * 2 == p.sae_layer_bytes["float32"]
    assert p.model_bytes["bfloat16"] == pytest.approx(2 * 26.896e9)
    left = 80e9 - 2 * 26.896e9 - (2e9 + 0.05 * 80e9)
    assert p.layers_fit == int(left // p.sae_layer_bytes["bfloat16"]) == 12
    assert p.sae_cache_bytes() == 12 * p.sae_layer_bytes["bfloat16"]
    assert "12 of 64" in p.explorer_chart and p.index.startswith("streams")
    fp32 = q.plan(R27, 80, sae_dtype="float32")
    assert fp32.layers_fit == 6, "fp32 SAEs: half as many layers"
    with pytest.raises(AttributeError):
        p.device_memory = 1  # frozen


def test_a_model_larger_than_the_device_is_said_so():
    p = q.plan(R27, 24)
    assert not p.model_fits and p.layers_fit == 0 and p.explorer_chart == "does not fit"
    assert "more than 24 GB" in str(p)


def test_the_table_covers_every_release_and_device():
    from qscope_widgets.memory_plan import markdown_table, plan_table

    df = plan_table()
    assert len(df) == len(RELEASES) == 14
    assert list(df.columns[-4:]) == ["fit_24GB", "fit_40GB", "fit_80GB", "fit_141GB"]
    assert markdown_table().count("\n") == 14 + 1


@pytest.mark.parametrize("bad", ["lots", -1, 0, True, "80XB"])
def test_bad_device_memory_is_a_clear_error(bad):
    with pytest.raises(QScopeError, match="device_memory"):
        q.plan(R27, bad)


def test_unknown_release_and_dtype_are_clear_errors():
    with pytest.raises(QScopeError, match="unknown release"):
        q.plan("Qwen/nope", 80)
    with pytest.raises(QScopeError, match="dtype"):
        q.plan(R27, 80, sae_dtype="int3")
