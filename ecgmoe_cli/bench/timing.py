"""Timing that is fair between models: interleaved runs, warm-up, repeats, medians.

Every repeat runs each model once, starting from a different one each time (rotation), so
machine noise and cache state hit all models alike. A clock times one call: on CPU a wall
clock; on CUDA a pair of events recorded on the stream, read after the end event synchronises
(kernels are asynchronous, so a host clock would time the launch, not the work).
Peak memory is per call and per model: on CUDA the caching allocator's peak, reset before each
call; on CPU (torch keeps no allocator statistics there) `tensor_peak_bytes`, the most tensor
memory one call holds at once, from torch.profiler's allocation events. The process's RSS was
no measure: it keeps what the allocator does not hand back, so every model read the same.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch


class WallClock:
    """Host wall clock; `now` is injectable so tests can drive it."""

    def __init__(self, now: Callable[[], float] = time.perf_counter) -> None:
        self.now = now

    def measure(self, fn: Callable[[], object]) -> float:
        """Seconds one call of `fn` takes."""
        t0 = self.now()
        fn()
        return self.now() - t0


class CudaClock:
    """CUDA events around the call; synchronised before (no earlier work) and after."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def measure(self, fn: Callable[[], object]) -> float:
        torch.cuda.synchronize(self.device)
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1000.0


class CudaMemory:
    """The CUDA caching allocator's peak of allocated bytes."""

    kind = "cuda_allocated"
    resettable = True

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def start(self) -> int:
        torch.cuda.reset_peak_memory_stats(self.device)
        return int(torch.cuda.memory_allocated(self.device))

    def peak(self) -> int:
        return int(torch.cuda.max_memory_allocated(self.device))


class NoMemory:
    """For tests and devices where memory is not measured."""

    kind = "none"
    resettable = False

    def start(self) -> int:
        return 0

    def peak(self) -> int:
        return 0


@dataclass
class Timing:
    """One model's timed calls (seconds) and memory (bytes) at one batch size."""

    seconds: list[float] = field(default_factory=list)
    peak_bytes: int = 0
    working_bytes: int = 0  # peak minus what was in use just before the call

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.seconds, q))


def interleaved(fns: Mapping[str, Callable[[], object]], warmup: int, repeats: int,
                clock: WallClock | CudaClock, memory: CudaMemory | NoMemory,
                context: Callable[[], AbstractContextManager[object]] = nullcontext
                ) -> dict[str, Timing]:
    """Warm every model up, then `repeats` rounds of one timed call each, rotating the order."""
    names = list(fns)
    out = {n: Timing() for n in names}
    with context():
        for _ in range(warmup):
            for n in names:
                clock.measure(fns[n])
        for r in range(repeats):
            for n in names[r % len(names):] + names[:r % len(names)]:
                before = memory.start()
                out[n].seconds.append(clock.measure(fns[n]))
                peak = memory.peak()
                out[n].peak_bytes = max(out[n].peak_bytes, peak)
                out[n].working_bytes = max(out[n].working_bytes, peak - before)
    return out


def tensor_peak_bytes(fn: Callable[[], object]) -> int:
    """The most tensor memory one call of `fn` holds at once beyond what was live before it
    (weights and inputs are not counted): the running sum of torch.profiler's allocation
    (+) and free (-) events in the order they happened, at its highest."""
    from torch.profiler import ProfilerActivity, profile

    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as p:
        fn()
    events = sorted((e for e in p.profiler.kineto_results.events() if e.name() == "[memory]"),
                    key=lambda e: e.start_ns())
    live = np.cumsum([e.nbytes() for e in events]) if events else np.zeros(1, np.int64)
    return int(max(live.max(), 0))


@contextmanager
def _quiet_stderr() -> Iterator[None]:
    """The profiler's C++ side prints a start and a stop line on fd 2 each time: not for users."""
    import os
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def matmul_gflops(device: torch.device, dtype: torch.dtype, n: int = 1024, repeats: int = 5,
                  clock: WallClock | CudaClock | None = None) -> float:
    """Achievable GFLOP/s of the device: the median time of an n x n matmul in `dtype`."""
    clock = clock or (CudaClock(device) if device.type == "cuda" else WallClock())
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    torch.mm(a, b)  # warm-up (library init, clocks)
    seconds = float(np.median([clock.measure(lambda: torch.mm(a, b)) for _ in range(repeats)]))
    return 2 * n ** 3 / max(seconds, 1e-12) / 1e9


def autocast(device: torch.device, dtype: torch.dtype) -> AbstractContextManager[object]:
    """Mixed precision for bf16 / fp16 (weights stay fp32); nothing for fp32."""
    return nullcontext() if dtype == torch.float32 else torch.autocast(device.type, dtype=dtype)
