"""Hub releases download only the layers asked for; device_map passes through to transformers."""

import shutil

import pytest
import torch

from qscope_widgets import Scope
from qscope_widgets.sae import QwenScopeHubRepo

from conftest import make_saes, write_release_folder


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    """Serve a release-layout folder through ``hf_hub_download`` (the network is the only thing replaced)."""
    huggingface_hub = pytest.importorskip("huggingface_hub")
    remote = write_release_folder(tmp_path / "remote", make_saes(64, range(4), d_sae=256, k=8), k=8)
    requested = []

    def download(repo_id, filename, revision=None, **kw):
        requested.append((repo_id, filename))
        dest = tmp_path / "hf_cache" / filename
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(remote / filename, dest)
        return str(dest)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    return requested


def test_hub_release_downloads_only_requested_layers(fake_hub, qwen3, tokenizer):
    with pytest.warns(UserWarning, match="Qwen licence"):
        src = QwenScopeHubRepo("someone/SAE-Res-tiny-W1K-L0_8")
    assert src.layers == [0, 1, 2, 3]
    assert fake_hub == [("someone/SAE-Res-tiny-W1K-L0_8", "config.json")]
    scope = Scope(qwen3, tokenizer, src)
    scope.run("hello world", layers=[2])
    assert [f for _, f in fake_hub] == ["config.json", "layer2.sae.pt"]
    assert scope.saes.loaded_layers == [2]
    assert scope.sae(2).cfg.release == "someone/SAE-Res-tiny-W1K-L0_8" and scope.sae(2).cfg.k == 8


def test_known_release_works_offline_for_its_metadata(monkeypatch):
    huggingface_hub = pytest.importorskip("huggingface_hub")

    def offline(*a, **k):
        raise OSError("offline")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.warns(UserWarning):
        src = QwenScopeHubRepo("Qwen/SAE-Res-Qwen3.5-27B-W80K-L0_50")
    assert src.layers == list(range(64)) and src.cfg_fields["k"] == 50
    from qscope_widgets.errors import SAEFormatError

    with pytest.raises(SAEFormatError, match="online"):
        QwenScopeHubRepo("Qwen/not-a-release")


def test_device_map_passes_through(tmp_path, qwen3, tokenizer, sae_folder, monkeypatch):
    pytest.importorskip("accelerate")
    from transformers import AutoModelForCausalLM

    qwen3.save_pretrained(tmp_path / "m")
    tokenizer.save_pretrained(tmp_path / "m")
    seen = {}
    real = AutoModelForCausalLM.from_pretrained

    def spy(*a, **kw):
        seen.update(kw)
        return real(*a, **kw)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", spy)
    scope = Scope.from_pretrained(str(tmp_path / "m"), saes=str(sae_folder), device_map={"": "cpu"})
    assert seen["device_map"] == {"": "cpu"}
    assert scope.model.dtype == torch.bfloat16, "device_map defaults to bf16 like a GPU load"
    assert scope.sae(1).dtype == torch.float32, "SAEs stay fp32 on CPU"
    tr = scope.run("The quick brown fox", layers=[1])
    assert tr.layers[1].values.dtype == torch.float32 and torch.isfinite(tr.logits_last).all()
