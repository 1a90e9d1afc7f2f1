"""The SAE is exact to the Qwen-Scope formula (checked against a float64 reference) in every variant."""

import pytest
import torch

from qscope_widgets.errors import FeatureIndexError, SAEFormatError, SAEShapeError
from qscope_widgets.sae import SAEConfig, SparseAutoencoder

from conftest import make_saes


def reference_encode(x, W_enc, b_enc, k, relu=True, b_dec=None):
    x = x.double()
    if b_dec is not None:
        x = x - b_dec.double()
    pre = x @ W_enc.double().T + b_enc.double()
    if relu:
        pre = pre.relu()
    vals, ids = pre.topk(k, dim=-1)
    return torch.zeros_like(pre).scatter(-1, ids, vals)


@pytest.fixture
def sae():
    return make_saes(32, [0], d_sae=512, k=16, seed=3)[0]


def test_encode_decode_match_float64_reference(sae):
    x = torch.randn(7, 32, generator=torch.Generator().manual_seed(1)) * 3
    z_ref = reference_encode(x, sae.W_enc, sae.b_enc, 16)
    z = sae.encode(x)
    torch.testing.assert_close(z.double(), z_ref, rtol=1e-5, atol=1e-5)
    xhat_ref = z_ref @ sae.W_dec.double().T + sae.b_dec.double()
    torch.testing.assert_close(sae(x).double(), xhat_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sae.decode(z).double(), xhat_ref, rtol=1e-5, atol=1e-5)


def test_topk_keeps_exactly_k_sorted(sae):
    x = torch.randn(5, 9, 32)
    codes = sae.encode_sparse(x)
    assert codes.ids.shape == (5, 9, 16) and codes.values.shape == (5, 9, 16)
    assert (codes.values[..., :-1] >= codes.values[..., 1:]).all()
    assert ((sae.encode(x) != 0).sum(-1) <= 16).all()
    # distinct ids per token
    assert (codes.ids.sort(-1).values.diff(dim=-1) > 0).all()


def test_identity_variant_keeps_negative_codes():
    sae = make_saes(16, [0], d_sae=64, k=60, seed=0)[0]
    x = torch.randn(4, 16)
    ident = SparseAutoencoder.from_state_dict(sae.release_state_dict(), k=60, topk_activation="identity")
    z = ident.encode(x)
    assert (z < 0).any(), "with k close to d_sae some kept pre-activations are negative"
    torch.testing.assert_close(z.double(), reference_encode(x, sae.W_enc, sae.b_enc, 60, relu=False),
                               rtol=1e-5, atol=1e-5)
    assert (sae.encode(x) >= 0).all()


def test_apply_b_dec_to_input_variant(sae):
    alt = SparseAutoencoder.from_state_dict(sae.release_state_dict(), k=16, apply_b_dec_to_input=True)
    x = torch.randn(3, 32)
    torch.testing.assert_close(alt.encode(x).double(),
                               reference_encode(x, sae.W_enc, sae.b_enc, 16, b_dec=sae.b_dec), rtol=1e-5, atol=1e-5)


def test_relu_and_jumprelu_variants():
    base = make_saes(16, [0], d_sae=64, k=8)[0]
    st = base.release_state_dict()
    relu = SparseAutoencoder.from_state_dict(st, architecture="relu")
    x = torch.randn(5, 16)
    pre = x @ st["W_enc"].T + st["b_enc"]
    torch.testing.assert_close(relu.encode(x), pre.relu())
    torch.testing.assert_close(relu.encode_sparse(x).to_dense(64), pre.relu())
    st["threshold"] = torch.full((64,), 0.2)
    jr = SparseAutoencoder.from_state_dict(st, architecture="jumprelu")
    torch.testing.assert_close(jr.encode(x), pre * (pre > 0.2))


def test_w_dec_is_feature_major_and_directions_are_columns(sae):
    assert sae.W_dec.shape == (32, 512)
    assert sae.W_dec.T.is_contiguous()
    torch.testing.assert_close(sae.decoder_direction(7), sae.W_dec[:, 7])
    st = sae.release_state_dict()
    assert st["W_dec"].is_contiguous() and st["W_dec"].shape == (32, 512)
    with pytest.raises(FeatureIndexError, match="512"):
        sae.decoder_direction(512)


def test_state_dict_shape_errors_name_the_problem(sae):
    st = sae.release_state_dict()
    with pytest.raises(SAEShapeError, match="d_model=32.*d_model=64"):
        SparseAutoencoder.from_state_dict(st, k=16, d_model=64)
    bad = dict(st, b_dec=torch.zeros(31))
    with pytest.raises(SAEShapeError, match="b_dec"):
        SparseAutoencoder.from_state_dict(bad, k=16)
    with pytest.raises(SAEFormatError, match="missing"):
        SparseAutoencoder.from_state_dict({"W_enc": st["W_enc"]}, k=16)
    nan = dict(st, b_enc=st["b_enc"].clone().fill_(float("nan")))
    with pytest.raises(SAEFormatError, match="NaN"):
        SparseAutoencoder.from_state_dict(nan, k=16)
    with pytest.raises(SAEFormatError, match="k"):
        SparseAutoencoder.from_state_dict(st)  # a TopK SAE without k
    with pytest.raises(SAEFormatError, match="integer|floating"):
        SparseAutoencoder.from_state_dict(dict(st, b_enc=torch.zeros(512, dtype=torch.long)), k=16)


def test_config_round_trips_through_json():
    cfg = SAEConfig(d_model=8, d_sae=64, k=4, layer=2, release="x/y")
    import json

    assert SAEConfig.from_dict(json.loads(cfg.to_json())) == cfg
    sl = SAEConfig.from_dict({"d_in": 8, "d_sae": 64, "architecture": "jumprelu"})
    assert sl.d_model == 8 and sl.architecture == "jumprelu"


def test_sae_trains(sae):
    """Parameters are trainable: one step of Adam lowers reconstruction loss (the demo trains this class)."""
    s = SparseAutoencoder(SAEConfig(d_model=32, d_sae=128, k=8))
    x = torch.randn(256, 32)
    opt = torch.optim.Adam(s.parameters(), lr=1e-2)
    losses = []
    for _ in range(20):
        loss = (s(x) - x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]
    assert s.W_dec.T.is_contiguous()
