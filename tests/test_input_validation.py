"""Issue 10 item 8: every bad input gets a QScopeError subclass whose message names the bad value, the scope stays
usable, and integer-valued numpy scalars are accepted wherever an int is."""

import json
import math
import time

import numpy as np
import pytest
import torch

from qscope_widgets import Scope, SteeringEdit
from qscope_widgets.errors import (PromptError, QScopeError, SAEFormatError, SteeringError, UnknownLayerError)
from qscope_widgets.sae.io import load_sae
from qscope_widgets.sae.sources import SAELensFolders, resolve_source
from qscope_widgets.validate import as_bool, as_float, as_int, format_feature_url

from conftest import hook_snapshot, make_saes

PROMPT = "The quick brown fox"


@pytest.fixture(scope="module")
def s3(tokenizer, qwen3, tmp_path_factory):
    from conftest import write_release_folder

    folder = write_release_folder(tmp_path_factory.mktemp("rel"), make_saes(64, range(4)), k=8)
    return Scope(qwen3, tokenizer, str(folder))


# ------------------------------------------------------------------------------------------- the shared helpers
def test_as_int_takes_python_and_numpy_integers_only():
    assert as_int(np.int64(3), "x") == 3 and type(as_int(np.int64(3), "x")) is int
    assert as_int(np.uint8(7), "x") == 7 and as_int(torch.tensor(4), "x") == 4
    for bad in (True, np.bool_(True), 1.0, np.float32(2.0), 1.5, "3", None, math.inf, [1], np.array([1, 2])):
        with pytest.raises(QScopeError, match="must be an int"):
            as_int(bad, "x")
    with pytest.raises(QScopeError, match=">= 1, got 0"):
        as_int(0, "x", min=1)


def test_as_bool_and_as_float_refuse_look_alikes():
    assert as_bool(np.bool_(False), "b") is False
    for bad in ("no", 0, None, "False"):
        with pytest.raises(QScopeError, match="True or False"):
            as_bool(bad, "b")
    assert as_float(np.float32(0.5), "f") == 0.5 and as_float(3, "f") == 3.0
    for bad, msg in ((None, "number"), ("x", "number"), (True, "number"), (math.nan, "finite"), (math.inf, "finite"),
                     (10**400, "representable")):
        with pytest.raises(QScopeError, match=msg):
            as_float(bad, "f")


# ------------------------------------------------------------------------------------------- Scope.run
@pytest.mark.parametrize("kwargs, error, match", [
    ({"prompt": "fox \ud800 jumps"}, PromptError, "lone surrogate"),
    ({"prompt": [1, 2.0, 3]}, PromptError, "2.0"),
    ({"prompt": [1, True]}, PromptError, "True"),
    ({"prompt": [1, 2**70]}, PromptError, "token ids"),
    ({"prompt": torch.tensor([True, False])}, PromptError, "torch.bool"),
    ({"layers": 1.0}, UnknownLayerError, "1.0"),
    ({"layers": [1.0]}, UnknownLayerError, "1.0"),
    ({"layers": "3"}, UnknownLayerError, "'3'"),
    ({"top_n": True}, QScopeError, "top_n must be an int, got True"),
    ({"top_n": 2.5}, QScopeError, "2.5"),
    ({"return_residuals": "yes"}, QScopeError, "'yes'"),
    ({"cancel": 5}, QScopeError, "cancel must be callable"),
    ({"steering": [{"layer": 1, "feature": 2, "positions": [math.inf]}]}, SteeringError, "inf"),
    ({"steering": [{"layer": 1, "feature": 2, "positions": [1.5]}]}, SteeringError, "1.5"),
    ({"steering": [{"layer": 1, "feature": 2, "positions": [True]}]}, SteeringError, "True"),
    ({"steering": [{"layer": 1, "feature": 2, "enabled": "no"}]}, SteeringError, "'no'"),
    ({"steering": [{"layer": 1.0, "feature": 2}]}, SteeringError, "1.0"),
    ({"steering": [{"layer": 1, "feature": 2, "strength": "big"}]}, SteeringError, "'big'"),
    ({"steering": [{"layer": 1, "feature": 2, "mode": ["add"]}]}, SteeringError, "mode"),
])
def test_bad_run_argument_is_named(s3, kwargs, error, match):
    base = s3.run(PROMPT, layers=[3])
    hooks = hook_snapshot(s3)
    args = {"prompt": PROMPT, "layers": [3], **kwargs}
    with pytest.raises(error, match=match):
        s3.run(args.pop("prompt"), **args)
    assert hook_snapshot(s3) == hooks
    assert torch.equal(s3.run(PROMPT, layers=[3]).logits_last, base.logits_last)


def test_numpy_integers_work_wherever_an_int_does(s3):
    ref = s3.run(PROMPT, layers=3, top_n=5, steering=[SteeringEdit(1, 2, 3.0, positions=[1])])
    got = s3.run(PROMPT, layers=np.int64(3), top_n=np.int32(5),
                 steering=[SteeringEdit(np.int64(1), np.int16(2), np.float32(3.0), positions=[np.int64(1)])])
    assert torch.equal(got.logits_last, ref.logits_last)
    ids = s3.tokenize(PROMPT)[0].tolist()
    assert torch.equal(s3.run([np.int64(i) for i in ids], layers=[3]).logits_last,
                       s3.run(ids, layers=[3]).logits_last)
    assert s3.check_layer(np.int64(2)) == 2 and s3.sae(np.int64(2)).cfg.layer == 2


def test_a_huge_prompt_is_refused_before_it_is_tokenized(s3, monkeypatch):
    calls = []
    real = type(s3.tokenizer).__call__

    def counting(self, text, *a, **k):
        calls.append(len(text))
        return real(self, text, *a, **k)

    monkeypatch.setattr(type(s3.tokenizer), "__call__", counting)
    t0 = time.perf_counter()
    with pytest.raises(PromptError, match="2,000,000 characters"):
        s3.run("a" * 2_000_000)
    assert time.perf_counter() - t0 < 0.5
    assert calls == [], "nothing may be tokenized"
    # a long one under the character cap is refused after tokenizing only a prefix of 8 x context characters
    with pytest.raises(PromptError, match="context"):
        s3.run("ab " * 2000)
    assert max(calls) <= 8 * s3.max_context


# ------------------------------------------------------------------------------------------- generate
@pytest.mark.parametrize("kw, match", [
    ({"temperature": None}, "temperature must be a number, got None"),
    ({"temperature": "x"}, "temperature must be a number, got 'x'"),
    ({"temperature": 1e-45}, "1e-45"),
    ({"temperature": -1}, "temperature must be >= 0"),
    ({"top_p": None}, "top_p must be a number, got None"),
    ({"top_p": 0}, "top_p must be > 0"),
    ({"seed": 1.5}, "seed must be an int, got 1.5"),
    ({"seed": 2**70}, "seed must be <="),
    ({"on_token": 5}, "on_token must be callable"),
    ({"max_new_tokens": 2.0}, "max_new_tokens must be an int"),
    ({"baseline": "no"}, "baseline must be True or False"),
])
def test_bad_generate_argument_is_named(s3, kw, match):
    hooks = hook_snapshot(s3)
    with pytest.raises(QScopeError, match=match):
        s3.generate(PROMPT, max_new_tokens=kw.pop("max_new_tokens", 2), **kw)
    assert hook_snapshot(s3) == hooks
    assert s3.generate(PROMPT, max_new_tokens=2, seed=np.int64(3), temperature=np.float32(0.7)).text is not None


# ------------------------------------------------------------------------------------------- SAE sources and files
def test_bad_sae_sources_and_options_are_named(s3, qwen3, tokenizer, sae_folder):
    with pytest.raises(UnknownLayerError, match="'a'"):
        resolve_source({"a": "x"})
    with pytest.raises(SAEFormatError, match="layer 1.*42"):
        resolve_source({1: 42})
    with pytest.raises(SAEFormatError, match="k must be an int, got 'abc'"):
        resolve_source(str(sae_folder), k="abc")
    with pytest.raises(QScopeError, match="sae_cache_bytes must be an int, got 'abc'"):
        Scope(qwen3, tokenizer, str(sae_folder), sae_cache_bytes="abc")
    assert resolve_source({"2": str(sae_folder / "layer2.sae.pt")}).layers == [2]


@pytest.mark.parametrize("text, match", [("{not json", "not valid JSON"), ("[1, 2]", "JSON object, got list"),
                                         ("null", "JSON object, got NoneType"), ('{"d_in": "wide", "d_sae": 8}',
                                                                                  "d_model must be an int")])
def test_bad_saelens_cfg_json_is_named(tmp_path, text, match):
    from safetensors.torch import save_file

    folder = tmp_path / "blocks.1.hook_resid_post"
    folder.mkdir()
    save_file({"W_enc": torch.zeros(64, 8), "W_dec": torch.zeros(8, 64), "b_enc": torch.zeros(8),
               "b_dec": torch.zeros(64)}, str(folder / "sae_weights.safetensors"))
    (folder / "cfg.json").write_text(text)
    with pytest.raises(SAEFormatError, match=match):
        SAELensFolders(tmp_path).load(1)


def test_bad_release_config_json_is_named(tmp_path, sae_folder):
    import shutil

    folder = tmp_path / "rel"
    shutil.copytree(sae_folder, folder)
    for text, match in (("{oops", "not valid JSON"), ("[]", "JSON object"), ('{"k": "abc"}', "'abc'")):
        (folder / "config.json").write_text(text)
        with pytest.raises(SAEFormatError, match=match):
            resolve_source(str(folder))


@pytest.mark.parametrize("kind", ["meta", "sparse"])
def test_pt_with_meta_or_sparse_tensors_is_refused(tmp_path, kind):
    sae = make_saes(64, [0], d_sae=32)[0]
    state = {"W_enc": sae.W_enc.detach().clone(), "W_dec": sae.W_dec.detach().clone(),
             "b_enc": sae.b_enc.detach().clone(), "b_dec": sae.b_dec.detach().clone()}
    state["W_enc"] = state["W_enc"].to("meta") if kind == "meta" else state["W_enc"].to_sparse()
    path = tmp_path / "layer0.sae.pt"
    torch.save(state, path)
    with pytest.raises(SAEFormatError, match="W_enc"):
        load_sae(path, k=8, layer=0)


def test_feature_url_must_be_http():
    assert format_feature_url("https://x.org/{layer}/{feature}", 3, 7) == "https://x.org/3/7"
    for bad in ("javascript:alert(1)", "data:text/html,<b>", " file:///etc/passwd", 5):
        with pytest.raises(QScopeError, match="feature_url"):
            format_feature_url(bad, 0, 0)
