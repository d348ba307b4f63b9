"""The worker pool both campaigns (`exitlab fuzz` and `exitlab fuzz --streams`) run their chunks in.

Workers ignore SIGINT (the parent owns Ctrl-C and shuts them down) and are replaced every few
chunks: each Unicorn engine leaves a little memory behind (~15 MB per 1000 cases), which would add
up to gigabytes over a long campaign. Two chunks per worker are in flight, so a worker never waits
for the parent. On Ctrl-C the chunks that already finished are still handed to `on_part`, so an
interrupted campaign reports what it really ran.
"""

from __future__ import annotations

import multiprocessing
import signal
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import TypeVar

T = TypeVar("T")


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def run_chunks(jobs: int, work: Callable[[int, int], T], chunks: Iterable[tuple[int, int]],
               on_part: Callable[[T], None]) -> None:
    """Run `work(start, end)` for every chunk on `jobs` processes; `on_part` gets each result.

    `work` must be picklable (a module-level function or a functools.partial of one)."""
    pool = ProcessPoolExecutor(max_workers=jobs, initializer=_ignore_sigint,
                               mp_context=multiprocessing.get_context("forkserver"), max_tasks_per_child=8)
    todo = iter(chunks)
    pending: set[Future[T]] = set()
    merged: set[Future[T]] = set()

    def submit() -> None:
        nxt = next(todo, None)
        if nxt is not None:
            pending.add(pool.submit(work, *nxt))

    try:
        for _ in range(jobs * 2):
            submit()
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                merged.add(fut)
                on_part(fut.result())
                submit()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        for fut in pending - merged:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                on_part(fut.result())
