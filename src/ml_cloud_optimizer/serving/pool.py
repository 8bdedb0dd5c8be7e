"""The bounded worker pool that runs the forecaster off the event loop, with back-pressure.

KServe calls a synchronous ``preprocess``/``predict``/``postprocess`` on its event loop
(``kserve/model.py``, ``Model.__call__``), so a request that forecasts for three seconds
froze every other connection, health and readiness probes included, for three seconds.
Here each stage runs on a fixed set of threads instead (LightGBM, XGBoost and numpy release
the GIL while they compute), and the loop only awaits.

A request is *admitted* before it queues: at most ``workers + queue`` requests are inside at
once. One more is refused at once with ``Overloaded`` (HTTP 503 with ``Retry-After``, gRPC
``RESOURCE_EXHAUSTED``) rather than waiting behind a queue that would outlast its client's
timeout. Admission is re-entrant within one request: the REST handler admits before it
decodes the body, and the model's ``__call__`` inside it does not count the request twice.

Light work stays on the loop (``run(..., inline=True)``): a small body's decoding and a few
feature rows' forecast take about a millisecond, less than a thread hop costs when the loop
and the workers trade the GIL. Measured with 16 connections of one-row requests, a hop per
stage cut throughput from 868 to 560 req/s and put p99 latency above 300 ms; a probe behind
a few such requests waits a few milliseconds. Histories (features built server-side) and
large batches or bodies always go to the pool.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

from grpc_interceptor.exceptions import ResourceExhausted

__all__ = ["DEFAULT_QUEUE", "DEFAULT_WORKERS", "INLINE_BODY_BYTES", "INLINE_ROWS", "Overloaded", "WorkerPool"]

# One thread: the forecast is mostly Python and pandas under the GIL, so more threads add no
# throughput and take the GIL from the event loop. Measured in bench/serving_soak.py (16 clients,
# mixed traffic, 60 s): 4 workers 56 req/s with probe p50 69 ms; 1 worker 77 req/s, probe p50 6 ms.
DEFAULT_WORKERS = 1
# 16 concurrent clients must never be refused; 64 waiting places leave room for bursts.
DEFAULT_QUEUE = 64

# Work below these sizes runs on the loop (see above): about a millisecond each.
INLINE_BODY_BYTES = 64 * 1024
INLINE_ROWS = 32

T = TypeVar("T")

# Set while a request holds its place, so that nested admissions (handler, then model) count once.
_admitted: contextvars.ContextVar[bool] = contextvars.ContextVar("mlco_pool_admitted", default=False)


class Overloaded(ResourceExhausted):
    """Every worker is busy and the queue is full: come back in ``retry_after_s`` seconds.

    A ``grpc_interceptor`` ``GrpcException``, so KServe's gRPC interceptor
    (``kserve/protocol/grpc/interceptors.py``) answers it ``RESOURCE_EXHAUSTED``; REST answers
    it 503 (``ml_cloud_optimizer.serving.server``).
    """

    def __init__(self, retry_after_s: int):
        super().__init__(details=f"the server is at capacity; retry in {retry_after_s} s")
        self.retry_after_s = retry_after_s


class WorkerPool:
    """``workers`` threads and ``queue`` waiting places; admission beyond both raises ``Overloaded``.

    Args:
        workers: threads that run model stages and body decoding.
        queue: admitted requests that may wait for a thread.
        retry_after_s: what a refused client is told to wait (``Retry-After``).
    """

    def __init__(self, workers: int = DEFAULT_WORKERS, queue: int = DEFAULT_QUEUE, retry_after_s: int = 1):
        if workers < 1 or queue < 0:
            raise ValueError(f"a worker pool needs workers >= 1 and queue >= 0, got {workers} and {queue}")
        self.workers = workers
        self.capacity = workers + queue
        self.retry_after_s = retry_after_s
        self.inside = 0
        self._executor: ThreadPoolExecutor | None = None

    @property
    def executor(self) -> ThreadPoolExecutor:
        # Created on first use: a model built in a test or a parent process starts no threads.
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="mlco-predict")
        return self._executor

    @contextmanager
    def admitted(self) -> Iterator[None]:
        """Hold one place for the request for the duration of the block, or raise ``Overloaded``.

        Called on the event loop only (REST and gRPC share it), so the count needs no lock.
        """
        if _admitted.get():
            yield
            return
        if self.inside >= self.capacity:
            raise Overloaded(self.retry_after_s)
        self.inside += 1
        token = _admitted.set(True)
        try:
            yield
        finally:
            _admitted.reset(token)
            self.inside -= 1

    async def run(self, fn: Callable[..., T], *args: Any, inline: bool = False, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` on a worker thread, in a copy of the caller's context; here when ``inline``.

        The context travels so that ``metrics.claim_error`` reaches the request's middleware.
        """
        if inline:
            return fn(*args, **kwargs)
        loop = asyncio.get_running_loop()
        call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
        return await loop.run_in_executor(self.executor, call)
