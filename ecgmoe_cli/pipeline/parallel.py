"""Ordered, chunked process-pool map shared by `preprocess` and `predict`.

Records are read and prepared in worker processes (NumPy/SciPy work holds the GIL for short
stretches only, but file parsing does not scale in threads). Results come back in input order
so a run is deterministic whatever the number of workers. Workers are forked where the platform
allows it, so large read-only state (a label table) is shared instead of pickled.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from ecgmoe_cli.errors import EcgMoeError

T = TypeVar("T")

_STATE: dict[str, Any] = {}  # per-worker state set by the pool initializer
FORKS = "fork" in mp.get_all_start_methods()  # workers share the parent's memory
_CONTEXT = mp.get_context("fork" if FORKS else None)


def worker_state() -> dict[str, Any]:
    """What `ordered_map(..., state=...)` gave this process (empty in the parent)."""
    return _STATE


def _die_with_parent(parent: int) -> None:
    """Linux: ask the kernel to SIGTERM this worker when its parent dies (even by SIGKILL),
    so no orphan keeps running, or keeps the parent's stdout pipe open, after a kill."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _init(state: dict[str, Any], parent: int | None = None) -> None:
    """Worker set-up (`parent` is None when running in the calling process itself)."""
    if parent is not None:
        _die_with_parent(parent)
        # Ctrl-C reaches the whole process group: the parent handles it (abort, clean up), so
        # workers ignore it rather than each printing a KeyboardInterrupt traceback.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    _STATE.clear()
    _STATE.update(state)


def _run_chunk(fn: Callable[[Any], Any], items: Sequence[Any], whole: bool) -> list[Any]:
    return list(fn(items)) if whole else [fn(x) for x in items]


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
               else (os.cpu_count() or 1))


def _pool(workers: int, state: dict[str, Any] | None) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(max_workers=workers, mp_context=_CONTEXT, initializer=_init,
                               initargs=(state or {}, os.getpid()))


def _worker_died() -> EcgMoeError:
    return EcgMoeError("a worker process died (killed, or out of memory?); "
                       "rerun with --workers 1 to find the record")


def ordered_map(fn: Callable[[Any], Any], items: Sequence[T], *, workers: int = 1,
                chunk: int = 8, state: dict[str, Any] | None = None,
                max_pending: int | None = None, pool: bool = False,
                whole_chunks: bool = False) -> Iterator[Any]:
    """Yield fn(item) for every item, in order. `fn` must be a module-level function; it can
    read `worker_state()`. workers <= 1 runs in this process (no pickling, easy debugging)
    unless `pool` asks for a worker process even then (the caller keeps its core for other
    work). At most `max_pending` chunks are in flight, which bounds memory on long runs.
    With `whole_chunks`, fn takes a whole chunk (a list) and returns one result per item, so
    work that batches items (a model's forward pass) happens where the items are."""
    chunks = [items[i:i + chunk] for i in range(0, len(items), chunk)]
    if (workers <= 1 and not pool) or len(items) <= chunk:
        _init(state or {})
        try:  # item by item: a result is used before the next is made (a Long's Record)
            for c in chunks:
                yield from fn(c) if whole_chunks else map(fn, c)
        finally:
            _STATE.clear()
        return
    limit = max_pending or workers * 4
    with _pool(workers, state) as pool:
        pending: deque[Future[list[Any]]] = deque()
        it: Iterable[Sequence[T]] = iter(chunks)
        for c in it:
            pending.append(pool.submit(_run_chunk, fn, c, whole_chunks))
            if len(pending) >= limit:
                break
        try:
            while pending:
                try:
                    results = pending.popleft().result()
                except BrokenProcessPool:
                    raise _worker_died() from None
                nxt = next(it, None)  # type: ignore[call-overload]
                if nxt is not None:
                    pending.append(pool.submit(_run_chunk, fn, nxt, whole_chunks))
                yield from results
        finally:  # closed early (an error, Ctrl-C): drop the queued chunks, not wait for them
            for f in pending:
                f.cancel()


class Prefetch:
    """fn over the head of `items` in one worker process, started now, while this process is
    busy with something that leaves a core idle (predict: importing torch and loading the
    weights); `take()` ends it and returns the results so far, in order. fn gets one item and
    can read `worker_state()` (`state`, persisting from item to item); it returns None to stop
    early (a memory budget spent). The worker keeps its results until asked: this process may
    hold the GIL for seconds (an import), so nothing is fed to or read from it meanwhile."""

    def __init__(self, fn: Callable[[Any], Any], items: Sequence[Any],
                 state: dict[str, Any] | None = None) -> None:
        self._stop = _CONTEXT.Event()
        self._results, send = _CONTEXT.Pipe(duplex=False)
        self._proc = _CONTEXT.Process(target=_prefetch, daemon=True,
                                 args=(fn, items, state or {}, self._stop, send, os.getpid()))
        self._proc.start()
        send.close()

    def take(self) -> list[Any]:
        """Stop after the item in progress; the results so far, in input order."""
        self._stop.set()
        try:
            return self._results.recv()  # type: ignore[no-any-return]
        except EOFError:
            raise _worker_died() from None
        finally:
            self.close()

    def close(self) -> None:
        """End the worker now (it writes no files: nothing is left half-done)."""
        self._results.close()
        self._proc.terminate()
        self._proc.join()


def _prefetch(fn: Callable[[Any], Any], items: Sequence[Any], state: dict[str, Any],
              stop: Any, send: Any, parent: int) -> None:
    """Prefetch's worker: an item that fails unexpectedly ends the prefetch (the caller's
    pool does it again and reports it)."""
    _init(state, parent)
    out = []
    try:
        for x in items:
            if stop.is_set() or (r := fn(x)) is None:
                break
            out.append(r)
    except Exception:  # noqa: BLE001, S110 (see the docstring)
        pass
    send.send(out)  # blocks until take() reads it
