"""End-to-end speed of `ecgmoe predict` on N synthetic 10 s 12-lead 500 Hz WFDB records.

    .venv/bin/python benchmarks/predict_speed.py --n 2000 [--n 20000] [--repeats 5] [--config base]

Records come from `ecgmoe simulate` (PTB-XL-shaped tree). Prints, for each N and run: records/s
of the whole command (process start to exit), the peak RSS and PSS of its process tree (main +
workers; RSS from /proc every 50 ms, PSS every second) and how fast the shared machine was
(a matmul probe just before, the hypervisor's steal time during the run); with --repeats, the
median over the runs; then where the time goes: the page-cache read of the files,
`read_record` and `prepare_record` per record in one process, and the model alone (records/s
at the command's batch size, one torch thread).
Random-init weights of the chosen config are fine for speed. Records and weights are made
once under --work and reused.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def make_records(folder: Path, n: int) -> None:
    """N synthetic 10 s 12-lead 500 Hz WFDB records (`ecgmoe simulate`); reused when present."""
    if folder.is_dir() and sum(1 for _ in folder.rglob("*.hea")) == n:
        return
    exe = Path(sys.executable).with_name("ecgmoe")
    subprocess.run([str(exe), "simulate", str(folder), "-n", str(n), "--fs", "500",
                    "--duration", "10", "--seed", "0", "--overwrite", "--quiet"], check=True)


def make_weights(folder: Path, config: str) -> None:
    """Random-init weights of `config` with every built-in task (speed does not need training)."""
    import torch

    from ecgmoe_cli.model.config import EcgMoeConfig
    from ecgmoe_cli.model.ecgmoe import EcgMoe
    from ecgmoe_cli.signal.spec import PreprocessSpec
    from ecgmoe_cli.tasks import TASKS
    from ecgmoe_cli.weights.store import save_model

    if (folder / "backbone.json").is_file():
        return
    torch.manual_seed(0)
    spec = PreprocessSpec()
    save_model(EcgMoe(EcgMoeConfig.from_spec(config, spec), list(TASKS.values())), spec, folder)


def _tree(root: int) -> list[int]:
    """`root` and its descendants, from /proc/PID/task/TID/children (no scan of every process)."""
    out, frontier = [], [root]
    while frontier:
        p = frontier.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    frontier += [int(c) for c in f.read().split()]
        except OSError:
            continue
    return out


def _rss_kb(pids: list[int]) -> int:
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * PAGE_KB
        except OSError:
            continue
    return total


def _pss_kb(pids: list[int]) -> int:
    """Summed PSS: forked workers share pages, which RSS counts once per process and PSS
    divides among them. Reading smaps_rollup walks page tables (~10 ms per torch process),
    so it is sampled 20x less often than RSS, to keep the sampler off the measured cores."""
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                total += sum(int(line.split()[1]) for line in f if line.startswith("Pss:"))
        except OSError:
            continue
    return total


def time_command(cmd: list[str]) -> tuple[float, float, int, int]:
    """Wall seconds, CPU seconds (user + sys of the whole tree) and the peak summed RSS and PSS
    (kB) of the command's process tree (RSS every 50 ms, PSS every second)."""
    peak = [0, 0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)

    def sample() -> None:
        tick = 0
        while proc.poll() is None:
            pids = _tree(proc.pid)
            peak[0] = max(peak[0], _rss_kb(pids))
            if tick % 20 == 0:
                peak[1] = max(peak[1], _pss_kb(pids))
            tick += 1
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    rc = proc.wait()
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    sampler.join()
    if rc:
        sys.exit(f"command failed ({rc}): {' '.join(cmd)}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, cpu, peak[0], peak[1]


def stage_costs(records: list[Path], weights: Path, batch_size: int) -> dict[str, float]:
    """CPU ms per record of each stage in one process, on a sample; model in records/s."""
    import torch

    from ecgmoe_cli.io.records.read import read_record
    from ecgmoe_cli.model.batch import example_batch
    from ecgmoe_cli.pipeline.prepare import prepare_record
    from ecgmoe_cli.weights.store import load_model

    sample = records[:300]
    clock = time.process_time  # CPU time of this process: less sensitive to other load
    t0 = clock()
    for p in sample:
        for f in (p, p.with_suffix(".dat")):
            f.read_bytes()
    raw = (clock() - t0) / len(sample) * 1e3
    t0 = clock()
    for p in sample:
        read_record(p)
    read = (clock() - t0) / len(sample) * 1e3
    torch.set_num_threads(1)
    model, spec, _ = load_model(weights)
    t0 = clock()
    for p in sample:
        prepare_record(p, spec)
    prep = (clock() - t0) / len(sample) * 1e3
    batch = example_batch(model.config, batch_size)
    model.predict(batch)
    t0 = clock()
    for _ in range(5):
        model.predict(batch)
    model_rate = 5 * batch_size / (clock() - t0)
    return {"raw_read_ms": raw, "read_record_ms": read, "prepare_record_ms": prep,
            "model_rec_per_s_1thread": model_rate}


def _cpu_jiffies() -> tuple[int, int]:
    """(all, steal) jiffies of the machine so far: steal is time the hypervisor gave our vCPUs
    to other guests, one sign of the slow phases of a shared machine."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    return sum(fields[:8]), fields[7]


def probe_gflops() -> float:
    """`ecgmoe bench`'s matmul probe on the CPU (1024^3 float32, median of 10): how fast the
    shared machine is right now."""
    import torch

    from ecgmoe_cli.bench.timing import matmul_gflops

    gflops = matmul_gflops(torch.device("cpu"), torch.float32, repeats=10)
    time.sleep(0.5)  # the probe's OpenMP threads stop spinning before the command starts
    return gflops


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, action="append", help="record counts (repeatable)")
    ap.add_argument("--repeats", type=int, default=1, help="runs per record count (median)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/ecgmoe-bench"))
    ap.add_argument("--config", default="base")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()
    counts = args.n or [2000]
    weights = args.work / f"weights-{args.config}"
    make_weights(weights, args.config)
    exe = Path(sys.executable).with_name("ecgmoe")
    import pyarrow.parquet as pq

    for n in counts:
        folder = args.work / f"sim-{n}"
        make_records(folder, n)
        out = args.work / f"out-{n}.parquet"
        cmd = [str(exe), "predict", str(folder), "-o", str(out), "--weights", str(weights),
               "--quiet", "--batch-size", str(args.batch_size)]
        if args.workers is not None:
            cmd += ["--workers", str(args.workers)]
        rates, cores = [], len(os.sched_getaffinity(0))
        for _ in range(args.repeats):
            load, probe = os.getloadavg()[0], probe_gflops()
            j0 = _cpu_jiffies()
            seconds, cpu, rss_kb, pss_kb = time_command(cmd)
            j1 = _cpu_jiffies()
            steal = (j1[1] - j0[1]) / max(j1[0] - j0[0], 1)
            table = pq.read_table(out, columns=["status"])
            ok = table.column("status").to_pylist().count("ok")
            rates.append(n / seconds)
            print(f"N={n}: {n / seconds:.1f} records/s end to end ({seconds:.1f} s wall; "
                  f"{cpu:.1f} CPU-s = {cpu / n * 1e3:.2f} ms CPU per record, so "
                  f"{cores * n / cpu:.0f} records/s if the {cores} cores were all ours; load "
                  f"average {load:.1f} before, matmul probe {probe:.0f} GFLOP/s, steal "
                  f"{100 * steal:.1f} %); peak of the process tree: RSS {rss_kb / 1024:.0f} MB "
                  f"summed, PSS {pss_kb / 1024:.0f} MB; {ok}/{table.num_rows} ok", flush=True)
        if args.repeats > 1:
            print(f"N={n}: median of {args.repeats} runs {statistics.median(rates):.1f} records/s "
                  f"(range {min(rates):.1f}-{max(rates):.1f}; {sum(r >= 200 for r in rates)} of "
                  f"{args.repeats} at >= 200)")
        print(f"  command: {' '.join(cmd)}")
    records = sorted((args.work / f"sim-{counts[0]}").rglob("*.hea"))
    costs = stage_costs(records, weights, args.batch_size)
    print("  CPU per record in one process: raw file read {raw_read_ms:.2f} ms, read_record "
          "{read_record_ms:.2f} ms, prepare_record (read included) {prepare_record_ms:.2f} ms; "
          "model alone {model_rec_per_s_1thread:.0f} records/s on 1 thread".format(**costs))


if __name__ == "__main__":
    main()
