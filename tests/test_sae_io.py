"""Loading is safe (weights_only, clear refusals) and reads every supported layout to the same SAE."""

import json
import os
import pickle

import pytest
import torch
from safetensors.torch import save_file

from qscope_widgets.errors import SAEFormatError, SAEShapeError, UnknownLayerError
from qscope_widgets.sae import QwenScopeFolder, SAEFiles, SAELensFolders, load_sae, resolve_source
from qscope_widgets.sae.io import default_cache_dir

from conftest import make_saes, write_release_folder


def same(a, b):
    for name in ("W_enc", "W_dec", "b_enc", "b_dec"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name), rtol=0, atol=0)


@pytest.fixture
def sae():
    return make_saes(16, [2], d_sae=128, k=8)[2]


def test_release_file_is_the_exact_layout(tmp_path, sae):
    write_release_folder(tmp_path, {2: sae}, k=8)
    raw = torch.load(tmp_path / "layer2.sae.pt", weights_only=True)
    assert sorted(raw) == ["W_dec", "W_enc", "b_dec", "b_enc"]
    assert raw["W_enc"].shape == (128, 16) and raw["W_dec"].shape == (16, 128)
    assert raw["W_enc"].dtype == torch.float32
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["k"] == 8 and cfg["d_sae"] == 128 and cfg["hook_point"] == "resid_post"


def test_release_folder_loads_only_requested_layer_and_caches(tmp_path, sae):
    write_release_folder(tmp_path / "rel", {2: sae, 5: make_saes(16, [5], d_sae=128, k=8)[5]}, k=8)
    src = QwenScopeFolder(tmp_path / "rel")
    assert src.layers == [2, 5]
    loaded = src.load(2, d_model=16)
    same(loaded, sae)
    assert loaded.cfg.k == 8 and loaded.cfg.layer == 2
    cached = list((default_cache_dir() / "saes").glob("*-layer2.sae.pt.*.safetensors"))
    assert len(cached) == 1, "a .pt is converted to a safetensors cache once"
    assert not list((default_cache_dir() / "saes").glob("*-layer5*")), "layer 5 was never asked for"
    again = src.load(2, d_model=16)  # now from the cache
    same(again, sae)
    assert again.W_dec.T.is_contiguous()


def test_corrupt_cache_entry_is_rebuilt(tmp_path, sae):
    write_release_folder(tmp_path / "rel", {2: sae}, k=8)
    QwenScopeFolder(tmp_path / "rel").load(2)
    (cached,) = (default_cache_dir() / "saes").glob("*.safetensors")
    cached.write_bytes(b"garbage")
    same(QwenScopeFolder(tmp_path / "rel").load(2), sae)


def test_malicious_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "layer0.sae.pt"
    torch.save({"W_enc": torch.zeros(2, 2), "evil": Evil()}, path)
    with pytest.raises(SAEFormatError, match="refused"):
        load_sae(path, k=1)
    assert not marker.exists(), "loading must never execute code from the file"
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(SAEFormatError):
        load_sae(raw, k=1)
    assert not marker.exists()


def test_truncated_empty_and_non_dict_files(tmp_path, sae):
    write_release_folder(tmp_path, {2: sae}, k=8)
    full = (tmp_path / "layer2.sae.pt").read_bytes()
    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes(full[: len(full) // 2])
    with pytest.raises(SAEFormatError, match="corrupt or truncated"):
        load_sae(trunc, k=8, cache_dir=False)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(SAEFormatError, match="empty"):
        load_sae(empty, k=8)
    lst = tmp_path / "list.pt"
    torch.save([torch.zeros(3)], lst)
    with pytest.raises(SAEFormatError, match="list"):
        load_sae(lst, k=8)
    with pytest.raises(SAEFormatError, match="not found"):
        load_sae(tmp_path / "nope.pt", k=8)
    bad_st = tmp_path / "bad.safetensors"
    bad_st.write_bytes(b"\x00" * 40)
    with pytest.raises(SAEFormatError, match="corrupt"):
        load_sae(bad_st, k=8)


def test_wrong_d_model_refused(tmp_path, sae):
    write_release_folder(tmp_path, {2: sae}, k=8)
    with pytest.raises(SAEShapeError, match="d_model=16.*d_model=64"):
        QwenScopeFolder(tmp_path).load(2, d_model=64)


def test_plain_safetensors_both_orientations(tmp_path, sae):
    st = sae.release_state_dict()
    save_file(st, str(tmp_path / "qs.safetensors"))
    same(load_sae(tmp_path / "qs.safetensors", k=8), sae)
    saelens = {"W_enc": st["W_enc"].T.contiguous(), "W_dec": st["W_dec"].T.contiguous(),
               "b_enc": st["b_enc"], "b_dec": st["b_dec"]}
    save_file(saelens, str(tmp_path / "sl.safetensors"))
    same(load_sae(tmp_path / "sl.safetensors", k=8), sae)
    src = SAEFiles({2: tmp_path / "sl.safetensors"}, k=8)
    same(src.load(2), sae)


def test_saelens_folders(tmp_path, sae):
    st = sae.release_state_dict()
    for layer in (2, 3):
        d = tmp_path / "saelens" / f"blocks.{layer}.hook_resid_post"
        d.mkdir(parents=True)
        save_file({"W_enc": st["W_enc"].T.contiguous(), "W_dec": st["W_dec"].T.contiguous(),
                   "b_enc": st["b_enc"], "b_dec": st["b_dec"]}, str(d / "sae_weights.safetensors"))
        (d / "cfg.json").write_text(json.dumps({"d_in": 16, "d_sae": 128, "architecture": "topk",
                                                "activation_fn_kwargs": {"k": 8},
                                                "hook_name": f"blocks.{layer}.hook_resid_post"}))
    src = resolve_source(str(tmp_path / "saelens"))
    assert isinstance(src, SAELensFolders) and src.layers == [2, 3]
    loaded = src.load(3)
    same(loaded, sae)
    assert loaded.cfg.k == 8 and loaded.cfg.layer == 3
    with pytest.raises(UnknownLayerError, match="available layers: 2..3"):
        src.load(7)


def test_release_folder_without_k_asks_for_it(tmp_path, sae):
    from qscope_widgets.sae.io import save_qwen_scope_layer

    save_qwen_scope_layer(sae, tmp_path / "layer2.sae.pt")
    with pytest.raises(SAEFormatError, match="k=..."):
        QwenScopeFolder(tmp_path)
    assert QwenScopeFolder(tmp_path, k=8).load(2).cfg.k == 8


def test_unknown_sources_are_named(tmp_path):
    with pytest.raises(SAEFormatError, match="not found"):
        resolve_source("./does/not/exist")
    (tmp_path / "x").mkdir()
    with pytest.raises(SAEFormatError, match="no SAELens SAE"):
        resolve_source(tmp_path / "x")


def test_release_registry_knows_the_27b():
    from qscope_widgets.sae.releases import RELEASES, list_releases

    r = RELEASES["Qwen/SAE-Res-Qwen3.5-27B-W80K-L0_100"]
    assert (r.d_model, r.d_sae, r.k, r.num_layers) == (5120, 81920, 100, 64)
    assert abs(r.bytes_per_layer / 1e9 - 3.36) < 0.01
    assert len(list_releases()) == 14
