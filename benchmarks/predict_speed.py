"""End-to-end speed of `ecgmoe predict` on N synthetic 10 s 12-lead 500 Hz WFDB records.

    .venv/bin/python benchmarks/predict_speed.py --n 2000 [--n 20000] [--config base]

Records come from `ecgmoe simulate` (PTB-XL-shaped tree). Prints, for each N: records/s of the whole command (process start to exit) and the peak RSS of
its process tree (main + reader workers, sampled from /proc every 50 ms), then where the time
goes: the page-cache read of the files, `read_record` and `prepare_record` per record in one
process, and the model alone (records/s at the command's batch size, one torch thread).
Random-init weights of the chosen config are fine for speed. Records and weights are made
once under --work and reused.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path


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
    from ecgmoe_cli.weights import save_model

    if (folder / "backbone.json").is_file():
        return
    torch.manual_seed(0)
    spec = PreprocessSpec()
    save_model(EcgMoe(EcgMoeConfig.from_spec(config, spec), list(TASKS.values())), spec, folder)


def _tree_mem_kb(root: int) -> tuple[int, int]:
    """Summed RSS and PSS (kB) of `root` and its descendants (from /proc). Forked readers share
    the parent's pages, which RSS counts once per process and PSS divides among them."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        parents[int(d)] = int(fields.get("PPid", "0").strip())
        rss[int(d)] = int(fields.get("VmRSS", "0 kB").split()[0])
    tree, frontier = {root}, [root]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parents.items() if pp == p and c not in tree]
        tree.update(kids)
        frontier += kids
    pss = 0
    for p in tree:
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                pss += sum(int(line.split()[1]) for line in f if line.startswith("Pss:"))
        except OSError:
            continue
    return sum(rss.get(p, 0) for p in tree), pss


def time_command(cmd: list[str]) -> tuple[float, float, int, int]:
    """Wall seconds, CPU seconds (user + sys of the whole tree) and the peak summed RSS and PSS
    (kB) of the command's process tree."""
    peak = [0, 0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)

    def sample() -> None:
        while proc.poll() is None:
            rss, pss = _tree_mem_kb(proc.pid)
            peak[0], peak[1] = max(peak[0], rss), max(peak[1], pss)
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

    from ecgmoe_cli.io.readers import read_record
    from ecgmoe_cli.model.batch import example_batch
    from ecgmoe_cli.prepare import prepare_record
    from ecgmoe_cli.weights import load_model

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, action="append", help="record counts (repeatable)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/ecgmoe-bench"))
    ap.add_argument("--config", default="base")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()
    counts = args.n or [2000]
    weights = args.work / f"weights-{args.config}"
    make_weights(weights, args.config)
    exe = Path(sys.executable).with_name("ecgmoe")
    for n in counts:
        folder = args.work / f"sim-{n}"
        make_records(folder, n)
        out = args.work / f"out-{n}.parquet"
        cmd = [str(exe), "predict", str(folder), "-o", str(out), "--weights", str(weights),
               "--quiet", "--batch-size", str(args.batch_size)]
        if args.workers is not None:
            cmd += ["--workers", str(args.workers)]
        load = os.getloadavg()[0]
        seconds, cpu, rss_kb, pss_kb = time_command(cmd)
        import pyarrow.parquet as pq

        table = pq.read_table(out, columns=["status"])
        ok = table.column("status").to_pylist().count("ok")
        cores = len(os.sched_getaffinity(0))
        print(f"N={n}: {n / seconds:.1f} records/s end to end ({seconds:.1f} s wall; "
              f"{cpu:.1f} CPU-s = {cpu / n * 1e3:.2f} ms CPU per record, so "
              f"{cores * n / cpu:.0f} records/s if the {cores} cores were all ours; load average "
              f"{load:.1f} before); peak of the process tree: RSS {rss_kb / 1024:.0f} MB summed, "
              f"PSS {pss_kb / 1024:.0f} MB; {ok}/{table.num_rows} ok")
        print(f"  command: {' '.join(cmd)}")
    records = sorted((args.work / f"sim-{counts[0]}").rglob("*.hea"))
    costs = stage_costs(records, weights, args.batch_size)
    print("  CPU per record in one process: raw file read {raw_read_ms:.2f} ms, read_record "
          "{read_record_ms:.2f} ms, prepare_record (read included) {prepare_record_ms:.2f} ms; "
          "model alone {model_rec_per_s_1thread:.0f} records/s on 1 thread".format(**costs))


if __name__ == "__main__":
    main()
