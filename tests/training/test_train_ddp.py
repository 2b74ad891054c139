"""`torchrun --nproc_per_node 2 -m ecgmoe_cli train`: two gloo processes on CPU, rank 0 writes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_two_process_gloo_training(tmp_path, tiny_dataset):
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        torchrun = Path(shutil.which("torchrun") or "torchrun")
    ds = tiny_dataset
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "ecgmoe_cli", "train",
           str(ds), "-o", str(tmp_path / "run"), "--config", "tiny", "--epochs", "2",
           "--batch-size", "8", "--quiet", "--json"]
    p = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=240, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    summary = json.loads(p.stdout)  # only rank 0 prints
    assert summary["world_size"] == 2 and summary["epochs_run"] == 2
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(ln)["epoch"] for ln in lines] == [1, 2]  # written once, by rank 0
    assert all(json.loads(ln)["world_size"] == 2 for ln in lines)
    assert (tmp_path / "run" / "weights" / "backbone.safetensors").is_file()
    assert not list(tmp_path.glob("run/**/.*"))  # no temporary file of an atomic write left
