"""Send run data to MLflow from a background thread, keeping what failed for a later retry.

MLflow's own ``synchronous=False`` mode queues batches too, but its flush has no timeout and
is global to the process. Here one worker thread per run does the (synchronous) client calls,
so the training loop only enqueues, waits at most ``timeout`` seconds when flushing, and
learns which metric batches failed so it can send them again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric

log = logging.getLogger(__name__)


class BackgroundSender:
    """Queue of MLflow calls for one run; never raises into the caller.

    Metric batches that fail are kept (up to ``max_buffered`` points, oldest dropped first) and
    prepended to the next batch. Other calls (tags, small artifacts) are not retried. The first
    failure of an outage is logged as a warning, the following ones at debug level.
    """

    def __init__(self, client: MlflowClient, run_id: str, max_buffered: int = 100_000,
                 coalesce_points: int = 500, coalesce_seconds: float = 30.0) -> None:
        self.client = client
        self.run_id = run_id
        self.max_buffered = max_buffered
        self.unsent: list[Metric] = []
        # Step metrics wait here and go out together: one store transaction for many points.
        # Even on a background thread each commit costs CPU that training needs (measured:
        # +19% epoch time on 2 cores when every step was its own commit).
        self.coalesce_points = coalesce_points
        self.coalesce_seconds = coalesce_seconds
        self._waiting: list[Metric] = []
        self._waiting_since = 0.0
        self._executor: ThreadPoolExecutor | None = ThreadPoolExecutor(1, thread_name_prefix="medkit-mlflow")
        self._pending: list[tuple[Future, list[Metric]]] = []
        self._failing = False

    def log_metrics(self, metrics: Mapping[str, float], step: int, coalesce: bool = False) -> None:
        """Enqueue ``metrics`` at ``step``, together with any points that failed earlier.

        With ``coalesce``, the points wait until enough have gathered (or enough time went by,
        or `flush` is called) and are then sent in one batch.
        """
        timestamp = int(time.time() * 1000)
        batch = [Metric(key, float(value), timestamp, step) for key, value in metrics.items()]
        if coalesce:
            if not self._waiting:
                self._waiting_since = time.monotonic()
            self._waiting.extend(batch)
            if (len(self._waiting) < self.coalesce_points
                    and time.monotonic() - self._waiting_since < self.coalesce_seconds):
                return
            batch = []
        batch, self._waiting = self._waiting + batch, []
        self._reap()
        if self.unsent:
            batch, self.unsent = self.unsent + batch, []
        if batch:
            self._submit(self._log_batch, batch, metrics=batch)

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Enqueue any client call (e.g. ``client.set_tag``); a failure is logged, not retried."""
        self._submit(fn, *args, **kwargs)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` s for queued calls; True when everything was sent."""
        if self._waiting:
            self.log_metrics({}, step=0)
        if self._pending:
            wait_futures([future for future, _ in self._pending], timeout=timeout)
        self._reap()
        return not self._pending and not self.unsent

    def close(self, timeout: float | None = None) -> int:
        """Retry the unsent points once, flush, stop the worker; return the number of points lost.

        After closing, calls run synchronously in the caller's thread (still without raising).
        """
        if self.unsent or self._waiting:
            self.log_metrics({}, step=0)
        self.flush(timeout)
        lost = len(self.unsent) + sum(len(metrics) for _, metrics in self._pending)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        self._pending = []
        return lost

    def _log_batch(self, batch: list[Metric]) -> None:
        self.client.log_batch(self.run_id, metrics=batch, synchronous=True)

    def _submit(self, fn: Callable[..., Any], *args: Any, metrics: list[Metric] | None = None, **kwargs: Any) -> None:
        if self._executor is not None:
            try:
                future = self._executor.submit(fn, *args, **kwargs)
            except RuntimeError:  # interpreter shutting down
                future = _run_inline(fn, *args, **kwargs)
        else:
            future = _run_inline(fn, *args, **kwargs)
        self._pending.append((future, metrics or []))
        if future.done():
            self._reap()

    def _reap(self) -> None:
        still_pending = []
        for future, metrics in self._pending:
            if not future.done():
                still_pending.append((future, metrics))
            elif future.cancelled() or future.exception() is not None:
                self.unsent.extend(metrics)
                self._report(future)
            elif self._failing:
                self._failing = False
                log.warning("MLflow logging works again (run %s)", self.run_id)
        self._pending = still_pending
        if len(self.unsent) > self.max_buffered:
            dropped = len(self.unsent) - self.max_buffered
            self.unsent = self.unsent[dropped:]
            log.warning("MLflow still unreachable: dropped the %d oldest unsent metric points", dropped)

    def _report(self, future: Future) -> None:
        error = "cancelled" if future.cancelled() else f"{type(future.exception()).__name__}: {future.exception()}"
        error = error.splitlines()[0][:300]
        if self._failing:
            log.debug("MLflow logging failed again: %s", error)
            return
        self._failing = True
        log.warning(
            "MLflow logging failed (%s); training continues and %d metric point(s) are kept to retry",
            error,
            len(self.unsent),
        )


def _run_inline(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future:
    future: Future = Future()
    try:
        future.set_result(fn(*args, **kwargs))
    except Exception as exc:  # recorded, reported by _reap
        future.set_exception(exc)
    return future
