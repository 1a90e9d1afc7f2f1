"""Sequence-numbered, coalescing execution of widget requests on one worker thread.

Why a scheduler: a slider drag sends dozens of edits a second, while one hooked forward (plus its SAE encodes)
takes milliseconds on the demo and much longer on a 27B model. Running every edit in order would make the widget
lag further and further behind the hand. Instead every edit gets a sequence number; the worker always runs the
*latest* pending request and drops the ones it skipped; a long-running job (a streamed continuation) asks
``is_stale()`` and stops as soon as a newer request exists. A result is published with its sequence number and
only ever replaces an older one, so a stale result never covers a fresh one (JS applies the same guard).

Nothing here knows about widgets or torch: it is tested on its own.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, TypeVar

R = TypeVar("R")
log = logging.getLogger(__name__)


class Superseded(Exception):
    """Raised inside a job when a newer request made its result useless."""


class PublishError(RuntimeError):
    """Handed to ``publish`` when publishing a job's result raised: the worker survives and says so."""


@dataclass
class Job(Generic[R]):
    """One accepted request."""

    seq: int
    request: R
    submitted: float = field(default_factory=time.perf_counter)


class RunScheduler(Generic[R]):
    """Run ``compute(job, is_stale)`` for the latest submitted request on a daemon worker thread.

    Args:
        compute: does the work for one job; may raise :class:`Superseded` (dropped silently) or any error
            (handed to ``publish`` as the result, so the widget can show it and keep working).
        publish: called on the worker thread with ``(job, result_or_exception)`` for every job that ran to
            the end, in increasing ``seq`` order.
        after: optional follow-up on the worker thread after a successful publish (e.g. streaming a
            continuation); it should poll ``is_stale()`` and stop early.
    """

    def __init__(self, compute: Callable[[Job[R], Callable[[], bool]], Any],
                 publish: Callable[[Job[R], Any], None],
                 after: Callable[[Job[R], Any, Callable[[], bool]], None] | None = None, *, name: str = "qscope"):
        self._compute, self._publish, self._after = compute, publish, after
        self._cond = threading.Condition()
        self._pending: Job[R] | None = None
        self._latest = 0          # the newest accepted seq
        self._published = 0       # the newest seq whose result was published (or that was dropped as stale)
        self._running: Job[R] | None = None
        self._closed = False
        self.skipped = 0          # requests coalesced away before they ran (a figure for benchmarks/tests)
        self.runs = 0
        self.errors = 0           # publish failures survived (each reported through publish, or logged)
        self.last_error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name=f"{name}-scheduler", daemon=True)
        self._thread.start()

    # -------------------------------------------------------------------------------- submitting / waiting
    def submit(self, request: R) -> int:
        """Accept a request; returns its sequence number. A pending, not yet started request is replaced."""
        with self._cond:
            if self._closed:
                raise RuntimeError("this scheduler is closed")
            self._latest += 1
            if self._pending is not None:
                self.skipped += 1
            self._pending = Job(self._latest, request)
            self._cond.notify_all()
            return self._latest

    @property
    def latest_seq(self) -> int:
        return self._latest

    @property
    def published_seq(self) -> int:
        return self._published

    @property
    def busy(self) -> bool:
        with self._cond:
            return self._pending is not None or self._running is not None

    def is_stale(self, seq: int) -> bool:
        """True once a request newer than ``seq`` was accepted."""
        return self._latest > seq

    def wait(self, seq: int | None = None, timeout: float | None = 60.0, *, idle: bool = False) -> bool:
        """Block until the result of ``seq`` (default: the latest) or a newer one is published.

        ``idle=True`` also waits for follow-up work (the streamed continuation) to finish. Returns False on
        timeout.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            target = self._latest if seq is None else seq
            while self._published < target or (idle and (self._pending is not None or self._running is not None)):
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def close(self, join_timeout: float | None = None) -> None:
        """Stop accepting requests; a running job sees itself stale and stops at its next ``is_stale()`` check.

        ``join_timeout``: also wait that long for the worker to finish (at interpreter exit, a worker thread
        still inside torch when the runtime is torn down aborts the process).
        """
        with self._cond:
            self._closed = True
            self._pending = None
            self._latest += 1  # whatever runs now is superseded
            self._cond.notify_all()
        if join_timeout is not None and self._thread is not threading.current_thread():
            self._thread.join(join_timeout)

    # -------------------------------------------------------------------------------- the worker
    def _loop(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                job, self._pending = self._pending, None
                self._running = job
            try:
                self._run(job)
            except BaseException:  # noqa: BLE001 - nothing a job does may stop the worker serving later ones
                self.errors += 1
                log.exception("qscope-widgets: request %s failed outside its job", job.seq)
                self._mark_published(job.seq)
            finally:
                with self._cond:
                    self._running = None
                    self._cond.notify_all()

    def _run(self, job: Job[R]) -> None:
        def stale() -> bool:
            return self.is_stale(job.seq)

        try:
            result: Any = self._compute(job, stale)
        except Superseded:
            self._mark_published(job.seq)
            return
        except BaseException as exc:  # noqa: BLE001 - every failure is shown in the widget, which stays alive
            result = exc
        self.runs += 1
        try:
            published = self._deliver(job, result)
        finally:
            self._mark_published(job.seq)
        if published and self._after is not None and not isinstance(result, BaseException) and not stale():
            try:
                self._after(job, result, stale)
            except Superseded:
                pass
            except BaseException as exc:  # noqa: BLE001 - shown like any other error; the worker must survive
                self._deliver(job, exc)

    def _deliver(self, job: Job[R], result: Any) -> bool:
        """``publish(job, result)``; if publishing itself raises, publish that error instead (so the status line
        says what went wrong), and if even that fails, log it. Never raises: the worker keeps serving.

        Returns True when ``result`` itself was published.
        """
        try:
            self._publish(job, result)
            return True
        except BaseException as exc:  # noqa: BLE001 - a publish failure must not kill the worker thread
            self.errors += 1
            self.last_error = exc
            try:
                self._publish(job, PublishError(f"showing the result of request {job.seq} failed: "
                                                f"{type(exc).__name__}: {exc}"))
            except BaseException:  # noqa: BLE001
                log.exception("qscope-widgets: publishing request %s failed, and so did reporting it", job.seq)
            return False

    def _mark_published(self, seq: int) -> None:
        with self._cond:
            self._published = max(self._published, seq)
            self._cond.notify_all()
