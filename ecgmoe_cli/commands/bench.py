"""`ecgmoe bench`: ECG-MoE against per-task and dense multi-task baselines, side by side."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from ecgmoe_cli.commands.common import console, err_console, split_list


def _csv(value: str, what: str) -> list[str]:
    """A comma-separated option that must name at least one item."""
    items = split_list(value)
    if not items:
        raise typer.BadParameter(f"{what} is empty")
    return items


def _sizes(value: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in _csv(value, "--batch-size"))
    except ValueError:
        raise typer.BadParameter(f"--batch-size takes integers like 1,8,64, not {value!r}") \
            from None


def run(
    device: Annotated[str, typer.Option(help="cpu or cuda (cuda:N).")] = "cpu",
    batch_size: Annotated[str, typer.Option("--batch-size", "-b",
                                            help="Batch sizes, comma-separated.")] = "1,8,64",
    tasks: Annotated[str, typer.Option(help="Tasks served, comma-separated, or 'all'.")] = "all",
    config: Annotated[str, typer.Option("--config", "-c", help="Model config (tiny, base); "
                                        "ignored with --weights.")] = "base",
    weights: Annotated[Path | None, typer.Option(help="Trained weights for ecgmoe (needed "
                                                 "for its accuracy).")] = None,
    baselines: Annotated[Path | None, typer.Option(help="Trained per_task / dense_multitask "
                                                   "(benchmarks/train_baselines.py), scored "
                                                   "beside ecgmoe.")] = None,
    data: Annotated[Path | None, typer.Option(help="Dataset (from `ecgmoe preprocess`): time "
                                              "its fold-10 windows and score accuracy.")] = None,
    dtype: Annotated[str, typer.Option(help="fp32, or autocast to bf16 / fp16.")] = "fp32",
    compile_: Annotated[bool, typer.Option("--compile", help="torch.compile every model.")]
    = False,
    repeats: Annotated[int, typer.Option(help="Timed calls per model and batch size.")] = 10,
    warmup: Annotated[int, typer.Option(help="Untimed calls per model first.")] = 2,
    models: Annotated[str, typer.Option(help="Models to compare, comma-separated "
                                        "(ecgmoe_merged serves the first task only).")]
    = "ecgmoe,per_task,dense_multitask,ecgmoe_merged",
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
    output: Annotated[Path | None, typer.Option("--output", "-o",
                                                help="Also write the JSON here.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")]
    = False,
) -> None:
    """Time ECG-MoE against per-task and dense multi-task baselines on the same inputs."""
    from ecgmoe_cli.bench.run import BenchOptions, run_bench
    from ecgmoe_cli.io.files import atomic_write_text

    opts = BenchOptions(device=device, batch_sizes=_sizes(batch_size),
                        tasks=tuple(_csv(tasks, "--tasks")), config=config, weights=weights,
                        baselines=baselines, data=data, dtype=dtype, compile=compile_,
                        repeats=repeats, warmup=warmup, models=tuple(_csv(models, "--models")))
    if quiet:
        result = run_bench(opts)
    else:
        with err_console.status("bench") as status:
            result = run_bench(opts, lambda msg: status.update(f"bench: {msg}"))
    text = json.dumps(result, indent=2)
    if output is not None:
        atomic_write_text(output, text + "\n")
    if as_json:
        console.print_json(text)
        return
    _print_tables(result)


def _print_tables(r: dict[str, Any]) -> None:
    from rich.table import Table

    title = (f"{r['device_name']} ({r['device']}), {r['dtype']}"
             f"{', compiled' if r['compile'] else ''}, config {r['config']}, "
             f"{len(r['tasks'])} tasks, {r['inputs']} inputs: median of {r['repeats']}")
    t = Table(title=title)
    for col in ("model", "batch", "rec/s", "gain", "p50 ms", "p95 ms", "peak MB", "GF/s",
                "%peak"):
        t.add_column(col, justify="left" if col == "model" else "right", no_wrap=col == "model")
    for row in r["results"]:
        speed = row["ecgmoe_speedup"]
        t.add_row(row["model"], str(row["batch_size"]), f"{row['records_per_s']:,.1f}",
                  "-" if speed is None else f"{speed:.2f}x",
                  f"{row['latency_ms_p50']:,.1f}", f"{row['latency_ms_p95']:,.1f}",
                  f"{row['peak_memory_mb']:,.1f}", f"{row['achieved_gflops']:,.1f}",
                  f"{100 * row['fraction_of_matmul_peak']:.0f}")
    console.print(t)
    sizes = Table(title="model sizes (counted as `ecgmoe info` counts: records of 12 beats)")
    for col in ("model", "tasks served", "parameters", "active / record", "MFLOP / record"):
        sizes.add_column(col, justify="left" if col == "model" else "right", no_wrap=True)
    last = {row["model"]: row for row in r["results"]}  # rows come in batch-size order
    for row in last.values():
        sizes.add_row(row["model"], str(row["tasks_served"]), f"{row['parameters_total']:,}",
                      f"{row['parameters_active_per_record']:,}",
                      f"{row['flops_per_record'] / 1e6:,.1f}")
    console.print(sizes)
    kind = r["results"][0]["memory_kind"] if r["results"] else "-"
    what = ("the most tensor memory one call held at once (torch.profiler's allocations, "
            "weights and inputs not counted)" if kind == "cpu_tensors"
            else "the CUDA allocator's peak during a call (weights included)")
    console.print(f"gain: ecgmoe's records/s over the row's. %peak: achieved GFLOP/s (on the "
                  f"timed batch) over a matmul probe ({r['matmul_gflops']:,.1f} GFLOP/s). "
                  f"peak MB: {what}.")
    load = [v for v in r["load_average"] if v is not None]
    if load and max(load) > (os.cpu_count() or 1) + 0.5:  # more runnable than cores
        console.print(f"[yellow]note:[/] load average {max(load):.1f} during the run: other "
                      "processes share this machine, so absolute times are inflated.")
    if r["accuracy"]:
        _print_accuracy(r)


def _print_accuracy(r: dict[str, Any]) -> None:
    from rich.table import Table

    acc = r["accuracy"]
    t = Table(title=f"test fold {acc[0]['fold']}: {acc[0]['n_windows']} windows")
    t.add_column("task")
    t.add_column("metric")
    for a in acc:
        t.add_column(a["model"], justify="right")
    for task in r["tasks"]:
        metric = next((a["tasks"][task]["metric"] for a in acc
                       if a["tasks"] and task in a["tasks"]), "")
        cells = []
        for a in acc:
            if not a["trained"]:
                cells.append("untrained")
            elif task not in a["tasks"]:
                cells.append("-")
            else:
                v = a["tasks"][task]["value"]
                cells.append("n/a" if v is None else f"{v:.4f}")
        t.add_row(task, metric, *cells)
    console.print(t)
    others = [a for a in acc if a["tasks"] and any("ecgmoe_advantage" in v
                                                   for v in a["tasks"].values())]
    if not others:
        return
    gap = Table(title="ecgmoe's advantage over each model, same windows: positive = ecgmoe "
                "better (MAE: lower); paired bootstrap 95 % CI")
    gap.add_column("task")
    for a in others:
        gap.add_column(a["model"], justify="right")
    for task in r["tasks"]:
        cells = []
        for a in others:
            adv = a["tasks"].get(task, {}).get("ecgmoe_advantage")
            if adv is None or adv["value"] is None:
                cells.append("-")
                continue
            lo, hi = adv["ci95"]
            ci = "" if lo is None else f" [{lo:+.4f}, {hi:+.4f}]"
            cells.append(f"{adv['value']:+.4f}{ci}")
        gap.add_row(task, *cells)
    console.print(gap)
