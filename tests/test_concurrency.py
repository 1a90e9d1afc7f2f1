"""Threads never see each other's hooks: a forward the package did not start is never steered or captured, and
every hooked pass of the package (evaluation included) holds ``scope.lock``. Deterministic: threads meet on
events, never on sleeps."""

import threading

import pytest
import torch

from qscope_widgets import SteeringEdit
from qscope_widgets.evaluation import evaluate_sae

PROMPT = "The quick brown fox jumps over the lazy dog"
BIG = [SteeringEdit(1, 5, 60.0), SteeringEdit(2, 9, -40.0)]


def _plain_logits(scope, ids):
    with torch.inference_mode():
        return scope.model(input_ids=ids, use_cache=False).logits


def _paused_run(scope, steering, paused: threading.Event, resume: threading.Event, result: dict):
    """``scope.run`` that stops after its first decoder layer (its hooks installed, its session open) until told."""
    state = {"first": True}

    def cancel():
        if state["first"]:
            state["first"] = False
            paused.set()
            assert resume.wait(30)
        return False

    def work():
        try:
            result["trace"] = scope.run(PROMPT, layers=[1, 3], steering=steering, cancel=cancel)
        except BaseException as exc:  # surfaced by the test
            result["error"] = exc
            paused.set()

    t = threading.Thread(target=work)
    t.start()
    return t


def test_a_plain_forward_in_another_thread_ignores_a_running_steered_pass(scope):
    ids = scope.tokenize(PROMPT)
    base = _plain_logits(scope, ids)
    steered_alone = scope.run(PROMPT, layers=[1, 3], steering=BIG)
    paused, resume, result = threading.Event(), threading.Event(), {}
    t = _paused_run(scope, BIG, paused, resume, result)
    try:
        assert paused.wait(30)
        assert "error" not in result
        # the widget's pass is mid-forward with its steering hooks on the shared model
        during = [_plain_logits(scope, ids) for _ in range(5)]
    finally:
        resume.set()
        t.join(30)
    assert "error" not in result, result.get("error")
    for logits in during:
        assert torch.equal(logits, base), "a cell's plain forward picked up the widget's steering"
    # and the cell's forwards did not overwrite what the widget's pass captured
    tr = result["trace"]
    assert torch.equal(tr.logits_last, steered_alone.logits_last)
    for n in (1, 3):
        assert torch.equal(tr.layers[n].values, steered_alone.layers[n].values)
        assert torch.equal(tr.layers[n].ids, steered_alone.layers[n].ids)


def test_a_steering_block_steers_only_its_own_thread(scope):
    ids = scope.tokenize(PROMPT)
    base = _plain_logits(scope, ids)
    inside, leave = threading.Event(), threading.Event()
    seen = {}

    def block():
        with scope.steering(BIG):
            seen["own"] = _plain_logits(scope, ids)
            inside.set()
            assert leave.wait(30)

    t = threading.Thread(target=block)
    t.start()
    try:
        assert inside.wait(30)
        other = _plain_logits(scope, ids)
    finally:
        leave.set()
        t.join(30)
    assert torch.equal(other, base)
    assert not torch.allclose(seen["own"], base), "the block's own thread must be steered"


def test_many_plain_forwards_beside_steered_runs_all_match_the_baseline(scope):
    """The issue's repro: a widget thread runs steered passes while a cell calls the model 40 times."""
    ids = scope.tokenize(PROMPT)
    base = _plain_logits(scope, ids)
    steered = scope.run(PROMPT, layers=[3], steering=BIG).logits_last
    stop = threading.Event()
    results, errors = [], []

    def widget():
        try:
            while not stop.is_set():
                results.append(scope.run(PROMPT, layers=[3], steering=BIG).logits_last)
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=widget)
    t.start()
    try:
        plain = [_plain_logits(scope, ids) for _ in range(40)]
    finally:
        stop.set()
        t.join(60)
    assert not errors
    assert sum(not torch.equal(p, base) for p in plain) == 0
    assert results and all(torch.equal(r, steered) for r in results)


def test_evaluate_sae_holds_the_scope_lock_while_its_splice_hooks_are_on(scope):
    windows = scope.tokenize(PROMPT).repeat(2, 1)
    expected = evaluate_sae(scope, windows, 2, batch_size=2)
    spliced, release = threading.Event(), threading.Event()
    evaluator = {}

    def spy(module, args, output):  # on layer 3, after layer 2's splice: fires inside evaluate_sae's forwards
        if threading.current_thread().name == "evaluator" and not spliced.is_set():
            spliced.set()
            assert release.wait(30)

    handle = scope.layers[3].register_forward_hook(spy)

    def work():
        evaluator["figures"] = evaluate_sae(scope, windows, 2, batch_size=2)

    t = threading.Thread(target=work, name="evaluator")
    try:
        t.start()
        assert spliced.wait(30)
        got = scope.lock.acquire(blocking=False)
        if got:
            scope.lock.release()
        assert not got, "evaluate_sae ran a forward without holding scope.lock"
    finally:
        release.set()
        t.join(60)
        handle.remove()
    assert evaluator["figures"] == pytest.approx(expected)


def test_runs_beside_a_threaded_evaluation_match_the_baseline(scope):
    """The issue's repro: evaluation in a thread, concurrent scope.run calls; none may differ from the baseline."""
    base = scope.run(PROMPT, layers=[1, 3])
    windows = scope.tokenize(PROMPT).repeat(4, 1)
    done = threading.Event()

    def work():
        try:
            for _ in range(3):
                evaluate_sae(scope, windows, 2, batch_size=1)
        finally:
            done.set()

    t = threading.Thread(target=work)
    t.start()
    differ = 0
    n = 0
    while not done.is_set() or n < 10:
        tr = scope.run(PROMPT, layers=[1, 3])
        differ += not torch.equal(tr.logits_last, base.logits_last)
        n += 1
    t.join(60)
    assert differ == 0, f"{differ} of {n} runs differed"
