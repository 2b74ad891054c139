"""A tiny learnable fake dataset written with the real DatasetWriter (no records, no prepare)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ecgmoe_cli.io.dataset_writer import DatasetWriter
from ecgmoe_cli.pipeline.prepare import Prepared
from ecgmoe_cli.pipeline.preprocess import add_record
from ecgmoe_cli.signal.spec import PreprocessSpec

TINY_SPEC = PreprocessSpec(fs=100.0, window_s=4.0, stride_s=4.0, min_tail_s=2.0,
                           bandpass_hz=(0.5, 40.0), max_beats=8)
TASK_NAMES = ("sex", "rr_interval", "arrhythmia", "rhythm")


def fake_record(i: int, rng: np.random.Generator, spec: PreprocessSpec = TINY_SPEC,
                n_windows: int = 1) -> tuple[Prepared, list[dict[str, float]]]:
    """One record whose sex shows in amplitude and whose rhythm shows in its RR."""
    w, k, fs = spec.window_samples, spec.max_beats, spec.fs
    female = i % 2
    fast = (i // 2) % 2
    rr_s = 0.55 if fast else 1.0
    amp = 1.8 if female else 0.7
    t = np.arange(w) / fs
    peaks = np.arange(0.3, w / fs - 0.3, rr_s)
    sig = np.zeros((n_windows, 12, w), np.float32)
    for p in peaks:
        sig[:, :, :] += amp * np.exp(-((t - p) ** 2) / (2 * 0.012 ** 2)).astype(np.float32)
    sig += rng.normal(0, 0.05, sig.shape).astype(np.float32)
    rp = np.full((n_windows, k), -1, np.int32)
    rr = np.zeros((n_windows, k, 4), np.float32)
    n = min(k, len(peaks))
    rp[:, :n] = np.round(peaks[:n] * fs).astype(np.int32)
    rr[:, :n] = [rr_s, rr_s, rr_s, 1.0]
    prep = Prepared(
        path=f"/fake/rec{i:03d}.hea", record=f"rec{i:03d}", fs_in=100.0, duration_s=4.0,
        leads_used=["I", "II"], lead_warnings=[], signal=sig,
        lead_mask=np.ones((n_windows, 12), bool), n_valid=np.full(n_windows, w, np.int32),
        rpeaks=rp, rr=rr, window_start_s=np.arange(n_windows, dtype=np.float32) * spec.stride_s,
        heart_rate_bpm=60 / rr_s, n_beats=len(peaks), quality=1.0,
        window_quality=np.ones(n_windows, np.float32),
    )
    labels = {
        "y_sex__female": float(female) if i % 5 else np.nan,  # some unknown targets
        "y_rr_interval": rr_s * 1000,
        "y_arrhythmia": 2.0 if fast else 0.0,  # sinus_tachy / sinus
        "y_rhythm__afib": 0.0, "y_rhythm__tachy": float(fast), "y_rhythm__brady": 0.0,
        "y_rhythm__irregular": np.nan,
    }
    return prep, [labels] * n_windows


def make_fake_dataset(path: Path, n_records: int = 40, seed: int = 0,
                      spec: PreprocessSpec = TINY_SPEC) -> Path:
    """Write `n_records` one-window records over folds 1-10 (and one failed record)."""
    from ecgmoe_cli.tasks import get_task

    rng = np.random.default_rng(seed)
    with DatasetWriter(path, spec, [get_task(t) for t in TASK_NAMES]) as w:
        for i in range(n_records):
            prep, labels = fake_record(i, rng, spec)
            add_record(w, prep, labels, fold=(i // 4) % 10 + 1)  # 4 in a row: both classes
        w.add_error("/fake/broken.hea", "broken", "unreadable header")
    return path


def my_cli():
    """A Typer app with train/finetune/evaluate registered as cli.py does (isolates these tests
    from the other commands' modules)."""
    import typer

    from ecgmoe_cli.commands import evaluate, finetune, train
    from ecgmoe_cli.commands.common import cli_errors

    app = typer.Typer()
    for name, mod in (("train", train), ("finetune", finetune), ("evaluate", evaluate)):
        app.command(name)(cli_errors(mod.run))
    return app
