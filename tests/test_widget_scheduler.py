"""The request scheduler behind every widget: sequence numbers, coalescing, supersession, errors."""

from __future__ import annotations

import threading
import time

import pytest

from qscope_widgets.widgets.scheduler import RunScheduler, Superseded


class Recorder:
    def __init__(self, gate: threading.Event | None = None, fail_on=None):
        self.ran: list[int] = []
        self.published: list[tuple[int, object]] = []
        self.gate = gate
        self.fail_on = fail_on or set()
        self.started = threading.Event()

    def compute(self, job, stale):
        self.started.set()
        if self.gate is not None:
            assert self.gate.wait(10)
        self.ran.append(job.request)
        if job.request in self.fail_on:
            raise ValueError(f"bad request {job.request}")
        return job.request * 10

    def publish(self, job, result):
        self.published.append((job.seq, result))


def test_drag_is_coalesced_to_the_latest_request():
    gate = threading.Event()
    rec = Recorder(gate)
    s = RunScheduler(rec.compute, rec.publish)
    first = s.submit(0)
    assert rec.started.wait(10)  # the worker is now blocked inside request 0
    seqs = [s.submit(v) for v in range(1, 40)]
    gate.set()
    assert s.wait(seqs[-1], timeout=10)
    assert rec.ran == [0, 39]  # everything between was dropped, the last value always runs
    assert [seq for seq, _ in rec.published] == [first, seqs[-1]]
    assert rec.published[-1][1] == 390
    assert s.skipped == 38


def test_published_results_only_move_forward():
    rec = Recorder()
    s = RunScheduler(rec.compute, rec.publish)
    for v in range(20):
        s.submit(v)
        time.sleep(0.001)
    assert s.wait(timeout=10)
    seqs = [seq for seq, _ in rec.published]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert seqs[-1] == s.latest_seq


def test_an_error_is_published_and_the_worker_keeps_running():
    rec = Recorder(fail_on={1})
    s = RunScheduler(rec.compute, rec.publish)
    s.submit(1)
    assert s.wait(timeout=10)
    seq, result = rec.published[-1]
    assert isinstance(result, ValueError) and "bad request 1" in str(result)
    s.submit(2)
    assert s.wait(timeout=10)
    assert rec.published[-1][1] == 20


def test_a_long_follow_up_is_superseded_by_a_newer_request():
    steps: dict[int, int] = {}
    started = {1: threading.Event(), 2: threading.Event()}

    def after(job, result, stale):
        started.get(job.request, threading.Event()).set()
        for _ in range(1000):  # 5 s if nobody interrupts
            if stale():
                raise Superseded
            steps[job.request] = steps.get(job.request, 0) + 1
            time.sleep(0.005)

    rec = Recorder()
    s = RunScheduler(rec.compute, rec.publish, after)
    s.submit(1)
    assert started[1].wait(10)
    s.submit(2)  # the stream of 1 stops at its next check; 2 runs and starts streaming
    assert started[2].wait(10)
    assert steps[1] < 1000 and rec.published[-1][1] == 20
    s.close(join_timeout=10)  # closing supersedes the stream of 2 too
    assert steps.get(2, 0) < 1000 and not s._thread.is_alive()


def test_superseded_compute_is_dropped_silently():
    def compute(job, stale):
        if job.request == "old":
            raise Superseded
        return job.request

    published = []
    s = RunScheduler(compute, lambda job, r: published.append(r))
    s.submit("old")
    assert s.wait(timeout=10)
    s.submit("new")
    assert s.wait(timeout=10)
    assert published == ["new"]


def test_wait_times_out_instead_of_hanging():
    gate = threading.Event()
    rec = Recorder(gate)
    s = RunScheduler(rec.compute, rec.publish)
    s.submit(1)
    assert s.wait(timeout=0.05) is False
    gate.set()
    assert s.wait(timeout=10)


def test_closed_scheduler_refuses_requests():
    s = RunScheduler(lambda j, st: 1, lambda j, r: None)
    s.close()
    with pytest.raises(RuntimeError, match="closed"):
        s.submit(1)


def test_an_exception_while_publishing_is_reported_and_the_worker_keeps_serving():
    """Issue 10.5: publish raising (e.g. a trait refusing a value) must not kill the worker thread."""
    from qscope_widgets.widgets.scheduler import PublishError

    published: list[tuple[int, object]] = []

    def publish(job, result):
        if job.request == "explode" and not isinstance(result, BaseException):
            raise TypeError("publish blew up")
        published.append((job.seq, result))

    s = RunScheduler(lambda job, stale: job.request, publish)
    seq = s.submit("explode")
    assert s.wait(seq, timeout=10)
    assert isinstance(published[-1][1], PublishError) and "publish blew up" in str(published[-1][1])
    seq = s.submit("fine")
    assert s.wait(seq, timeout=10), "the worker died after a publish failure"
    assert published[-1] == (seq, "fine") and s.errors == 1


def test_worker_survives_when_even_the_error_report_fails():
    calls = []

    def publish(job, result):
        calls.append(job.seq)
        if job.request == "explode":
            raise RuntimeError("always")

    s = RunScheduler(lambda job, stale: job.request, publish)
    s.submit("explode")
    assert s.wait(timeout=10)
    seq = s.submit("fine")
    assert s.wait(seq, timeout=10) and calls[-1] == seq


def test_follow_up_failure_of_any_kind_is_reported_and_the_worker_keeps_serving():
    published = []

    def after(job, result, stale):
        raise KeyError("follow-up broke")

    s = RunScheduler(lambda job, stale: job.request, lambda job, r: published.append((job.seq, r)), after)
    s.submit(1)
    assert s.wait(idle=True, timeout=10)
    assert isinstance(published[-1][1], KeyError)
    seq = s.submit(2)
    assert s.wait(seq, idle=True, timeout=10) and (seq, 2) in published
