"""`run_bench`: every contender on the same batches, interleaved, with sizes, FLOPs and accuracy.

Result (what `ecgmoe bench --json` prints):
```
{"device": "cpu", "device_name": ..., "matmul_gflops": ..., "config": "base", "dtype": "fp32",
 "compile": false, "inputs": "synthetic" | DATASET, "tasks": [...], "warmup": 2, "repeats": 10,
 "load_average": [1-min load before, after],
 "results": [{"model": "ecgmoe", "batch_size": 64, "records_per_s": ..., ...}, ...],
 "accuracy": [{"model": ..., "trained": bool, "fold": 10, "tasks": {task: {metric, value, n,
              ecgmoe_advantage: {value, ci95}}}}]}
```
Accuracy needs trained weights: `ecgmoe` (and `ecgmoe_merged`) get them from --weights, the
baselines from --baselines (`benchmarks/train_baselines.py`); a model without them is reported
`trained: false` with no figure rather than the score of a random model.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ecgmoe_cli.bench.accuracy import predictions, score_contender
from ecgmoe_cli.bench.contenders import (
    MODELS,
    Contender,
    active_parameters,
    build_contenders,
    load_baselines,
)
from ecgmoe_cli.bench.inputs import dataset_batch, synthetic_batch
from ecgmoe_cli.bench.timing import (
    CudaClock,
    CudaMemory,
    NoMemory,
    Timing,
    WallClock,
    autocast,
    interleaved,
    matmul_gflops,
    tensor_peak_bytes,
)
from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.model.encoders import fold_batchnorm
from ecgmoe_cli.model.summary import flops_per_record, size_counts
from ecgmoe_cli.training.folds import TEST_FOLD

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class BenchOptions:
    """What `ecgmoe bench` was asked for (CLI options, parsed)."""

    device: str = "cpu"
    batch_sizes: tuple[int, ...] = (1, 8, 64)
    tasks: tuple[str, ...] = ("all",)
    config: str = "base"
    weights: Path | None = None
    baselines: Path | None = None
    data: Path | None = None
    dtype: str = "fp32"
    compile: bool = False
    repeats: int = 10
    warmup: int = 2
    models: tuple[str, ...] = MODELS
    seed: int = 0
    probe_size: int | None = None
    """Side of the matmul probe; None: 1024 on CPU, 8192 on CUDA (big enough to saturate)."""

    def validate(self) -> None:
        """Collect every bad option, then raise once."""
        p = []
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            p.append(f"--batch-size needs positive sizes, got {list(self.batch_sizes)}")
        if self.repeats < 1 or self.warmup < 0:
            p.append("--repeats must be >= 1 and --warmup >= 0")
        if self.dtype not in DTYPES:
            p.append(f"--dtype {self.dtype!r} unknown; use {', '.join(DTYPES)}")
        unknown = [m for m in self.models if m not in MODELS]
        if unknown or not self.models:
            p.append(f"--models {list(self.models)}: use some of {', '.join(MODELS)}")
        if p:
            raise EcgMoeError("; ".join(p))


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name}, {torch.get_num_threads()} threads"


def _load_average() -> float | None:
    """1-minute load average: other processes on a shared machine skew the timings."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def _resolve_device(device: str) -> torch.device:
    from ecgmoe_cli.model.device import resolve_device

    return torch.device(resolve_device(device))  # clear error when CUDA is not there


def _load(opts: BenchOptions) -> tuple[Any, list[Any], Any, Any]:
    """(config, tasks, trained model or None, dataset or None)."""
    from ecgmoe_cli.model.config import EcgMoeConfig, get_config
    from ecgmoe_cli.tasks import TASKS, get_task

    everything = list(opts.tasks) == ["all"]
    ds = None
    if opts.data is not None:
        from ecgmoe_cli.io.dataset import open_dataset

        ds = open_dataset(opts.data)
    if opts.weights is not None:
        from ecgmoe_cli.weights.store import load_model

        model, spec, _ = load_model(opts.weights, None if everything else list(opts.tasks))
        if ds is not None and spec != ds.spec:
            raise EcgMoeError(f"dataset {ds.path} was preprocessed with spec {ds.spec.hash()}, the "
                              f"weights expect {spec.hash()}", opts.weights)
        return model.config, list(model.tasks.values()), model.eval(), ds
    tasks = list(TASKS.values()) if everything else [get_task(t) for t in opts.tasks]
    config = get_config(opts.config) if ds is None else EcgMoeConfig.from_spec(opts.config,
                                                                              ds.spec)
    return config, tasks, None, ds


def _test_rows(ds: Any) -> np.ndarray:
    rows = ds.rows(fold=TEST_FOLD)
    if len(rows) == 0:
        raise EcgMoeError(f"no windows in test fold {TEST_FOLD}", ds.path)
    return rows


def run_bench(opts: BenchOptions, on_step: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Time every contender at every batch size; sizes, FLOPs, memory and accuracy beside."""
    opts.validate()
    device = _resolve_device(opts.device)
    step = on_step or (lambda _msg: None)
    step("building models")
    config, tasks, trained, ds = _load(opts)
    baselines = None if opts.baselines is None else load_baselines(
        opts.baselines, [t.name for t in tasks], None if ds is None else ds.spec)
    contenders = build_contenders(opts.models, config, tasks, trained, opts.seed, baselines)
    sizes = {c.name: {**size_counts(c.module, config, c.task_arg),  # as `ecgmoe info` counts
                      "active": active_parameters(c.module)} for c in contenders}
    for c in contenders:  # BatchNorm folded into the convs, as predict serves every model
        fold_batchnorm(c.module.to(device).eval())
        if opts.compile:
            c.runner = torch.compile(c.module, dynamic=True)  # MoE slices vary per batch
    dtype = DTYPES[opts.dtype]
    cuda = device.type == "cuda"
    load_before = _load_average()
    step("matmul probe")
    with torch.inference_mode():
        peak_gflops = matmul_gflops(device, dtype, opts.probe_size or (8192 if cuda else 1024))
    clock = CudaClock(device) if cuda else WallClock()
    memory = CudaMemory(device) if cuda else NoMemory()  # CPU: tensor_peak_bytes, after
    warmup = max(opts.warmup, 2) if opts.compile else opts.warmup  # compiling is no timing
    rows = _test_rows(ds) if ds is not None else np.zeros(0, np.int64)
    results: list[dict[str, Any]] = []
    for bs in opts.batch_sizes:
        batch = (dataset_batch(ds, rows, bs, str(device)) if ds is not None
                 else synthetic_batch(config, bs, str(device), seed=opts.seed))
        step(f"batch {bs}: counting FLOPs")
        flops = {c.name: flops_per_record(c.module, batch, c.task_arg) for c in contenders}
        fns = {c.name: _caller(c, batch) for c in contenders}
        step(f"batch {bs}: timing {len(contenders)} models x {opts.repeats} repeats")
        timings = interleaved(fns, warmup, opts.repeats, clock, memory,
                              context=lambda: _inference(device, dtype))
        if not cuda:  # one more call per model, profiled: the tensors it holds at once
            step(f"batch {bs}: peak tensor memory")
            with _inference(device, dtype):
                for c in contenders:
                    peak = tensor_peak_bytes(fns[c.name])
                    timings[c.name].peak_bytes = timings[c.name].working_bytes = peak
        kind = memory.kind if cuda else "cpu_tensors"
        results += [_row(c, bs, timings[c.name], flops[c.name], peak_gflops, kind,
                         sizes[c.name]) for c in contenders]
    _add_speedups(results)
    accuracy = []
    if ds is not None:
        step("accuracy on the test fold")
        preds = {c.name: predictions(c, ds, rows, device, dtype) for c in contenders
                 if c.trained}
        accuracy = [score_contender(c, ds, rows, preds.get(c.name), preds.get("ecgmoe"))
                    for c in contenders]
    return {
        "device": str(device), "device_name": _device_name(device), "torch": torch.__version__,
        "matmul_gflops": peak_gflops, "config": config.name, "dtype": opts.dtype,
        "compile": opts.compile, "inputs": str(opts.data) if ds is not None else "synthetic",
        "weights": None if opts.weights is None else str(opts.weights),
        "baselines": None if opts.baselines is None else str(opts.baselines),
        "tasks": [t.name for t in tasks], "warmup": warmup, "repeats": opts.repeats,
        "load_average": [load_before, _load_average()], "results": results,
        "accuracy": accuracy,
    }


@contextmanager
def _inference(device: torch.device, dtype: torch.dtype) -> Iterator[None]:
    with torch.inference_mode(), autocast(device, dtype):
        yield


def _row(c: Contender, bs: int, t: Timing, flops: float, peak_gflops: float, memory_kind: str,
         sizes: dict[str, float]) -> dict[str, Any]:
    """One line of results: speed, latency, memory, sizes and how busy the device was.
    `flops` are those of the timed batch (achieved GFLOP/s); `sizes` are `ecgmoe info`'s."""
    med = t.percentile(50)
    return {
        "model": c.name, "batch_size": bs, "tasks_served": len(c.tasks),
        "records_per_s": bs / med,
        "latency_ms_p50": 1000 * med, "latency_ms_p95": 1000 * t.percentile(95),
        "peak_memory_mb": t.peak_bytes / 2**20, "working_memory_mb": t.working_bytes / 2**20,
        "memory_kind": memory_kind,
        "parameters_total": int(sizes["parameters"]),
        "parameters_active_per_record": int(sizes["active"]),
        "flops_per_record": sizes["flops_per_record"], "flops_per_record_timed": flops,
        "achieved_gflops": flops * bs / med / 1e9,
        "fraction_of_matmul_peak": flops * bs / med / 1e9 / peak_gflops, "trained": c.trained,
    }


def _caller(c: Contender, batch: dict[str, torch.Tensor]) -> Callable[[], object]:
    return lambda: c(batch)


def _add_speedups(results: list[dict[str, Any]]) -> None:
    """`ecgmoe_speedup`: how many times ecgmoe's records/s this row's is, at the same batch."""
    ref = {r["batch_size"]: r["records_per_s"] for r in results if r["model"] == "ecgmoe"}
    for r in results:
        r["ecgmoe_speedup"] = ref[r["batch_size"]] / r["records_per_s"] \
            if r["batch_size"] in ref else None
