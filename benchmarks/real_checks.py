"""Shipped (or any) weights on the real records of ../shared/ecg-real, where labels exist.

Run: .venv/bin/python benchmarks/real_checks.py [--weights weights]
- rr_interval MAE on the 10 s windows of the MIT-BIH records (mitdb 100, svdb 800; targets:
  mean RR of the reference `.atr` beats in each window) next to a trivial predictor (the
  windows' mean target) and the R-peak detector's own mean RR;
- `ecgmoe predict`'s heart_rate_bpm and n_beats on every record with reference beat annotations
  (`.atr`), against the same rate rule (signal.beats.heart_rate_bpm) on the reference beats
  and their count;
- age MAE and sex AUROC / accuracy on the 31 real 12-lead records with age and sex (30 CinC
  2021 headers + PTB-XL 00001 via a one-row ptbxl_database.csv), next to trivial predictors.
Records are linked (not copied) into a temporary folder and preprocessed with the weights' spec.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REAL = Path(os.environ.get("ECGMOE_REAL_DATA",
                          Path(__file__).resolve().parents[2] / "shared" / "ecg-real"))
ECGMOE = [sys.executable, "-m", "ecgmoe_cli"]


def link(src: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for f in src.parent.glob(src.name + ".*"):
        (dest / f.name).symlink_to(f)


def prepare(folder: Path, out: Path) -> None:
    subprocess.run([*ECGMOE, "preprocess", str(folder), "-o", str(out), "--quiet",
                    "--workers", "1"], check=True)


def predictions(weights: Path, ds_path: Path, tasks: list[str]) -> tuple:
    from ecgmoe_cli.io.dataset import open_dataset
    from ecgmoe_cli.training.outputs import predictions as run_predictions
    from ecgmoe_cli.weights.store import load_model

    model, _, _ = load_model(weights)
    ds = open_dataset(ds_path)
    rows = ds.rows()
    pred = run_predictions(model, ds, rows, tasks, 64, "cpu")
    return ds, rows, pred, model


def heart_rates(weights: Path, tmp: Path) -> dict[str, dict[str, float]]:
    """Per annotated record: predict's heart rate and beat count next to the reference's."""
    import pyarrow.parquet as pq
    import wfdb

    from ecgmoe_cli.io.labels.atr import BEAT_SYMBOLS
    from ecgmoe_cli.signal.beats import heart_rate_bpm

    folder = tmp / "annotated"
    bases = sorted(p.with_suffix("") for p in REAL.rglob("*.atr"))
    for base in bases:
        link(base, folder / base.parent.name)
    report = tmp / "annotated.parquet"
    subprocess.run([*ECGMOE, "predict", str(folder), "-o", str(report), "--weights",
                    str(weights), "--quiet"], check=True)
    rows = {Path(r["path"]).stem: r for r in pq.read_table(report).to_pylist()}
    out = {}
    for base in bases:
        ann = wfdb.rdann(str(base), "atr")
        fs = ann.fs or wfdb.rdheader(str(base)).fs
        beats = np.array([x for x, sym in zip(ann.sample, ann.symbol) if sym in BEAT_SYMBOLS])
        row = rows[base.name]
        out[f"{base.parent.name}/{base.name}"] = {
            "reference_bpm": heart_rate_bpm(beats, fs),
            "predicted_bpm": row["heart_rate_bpm"], "reference_beats": int(beats.size),
            "predicted_beats": row["n_beats"]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", type=Path, default=Path("weights"))
    a = ap.parse_args()
    out: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        rates = heart_rates(a.weights, t)
        out["heart_rate_annotated"] = {
            "records": rates,
            "max_abs_error_bpm": max(abs(r["predicted_bpm"] - r["reference_bpm"])
                                     for r in rates.values()),
            "records_with_equal_beat_count": sum(r["predicted_beats"] == r["reference_beats"]
                                                 for r in rates.values())}
        link(REAL / "wfdb-sample/100", t / "mitbih" / "mitdb")
        link(REAL / "svdb/800", t / "mitbih" / "svdb")
        prepare(t / "mitbih", t / "ds-mitbih")
        ds, rows, pred, _ = predictions(a.weights, t / "ds-mitbih", ["rr_interval"])
        y = ds.column("y_rr_interval", rows)
        known = np.isfinite(y)
        p = pred["rr_interval"].reshape(-1)[known]
        rr_det = ds.batch(rows)["rr"][:, :, 2]  # local mean RR of detected beats (s)
        det = np.array([r[r > 0].mean() * 1000 if (r > 0).any() else np.nan for r in rr_det])[known]
        out["rr_interval_mitbih"] = {
            "windows": int(known.sum()),
            "model_mae_ms": float(np.mean(np.abs(p - y[known]))),
            "trivial_mean_mae_ms": float(np.mean(np.abs(y[known].mean() - y[known]))),
            "detector_mean_rr_mae_ms": float(np.nanmean(np.abs(det - y[known]))),
        }
        cinc = t / "twelve"
        for hea in sorted((REAL / "cinc2021").glob("*.hea")):
            link(hea.with_suffix(""), cinc / "records500" / "cinc")
        link(REAL / "ptbxl/00001_lr", cinc / "records100" / "ptbxl")
        rows_csv = ["ecg_id,patient_id,age,sex,scp_codes,strat_fold,filename_lr,filename_hr"]
        rows_csv.append("1,1,56,1,\"{'NORM': 100.0}\",1,records100/ptbxl/00001_lr,")
        for i, hea in enumerate(sorted((REAL / "cinc2021").glob("*.hea")), start=2):
            text = hea.read_text(errors="replace")
            age = next((ln.split(":", 1)[1].strip() for ln in text.splitlines()
                        if ln.startswith("# Age:")), "")
            sex = next((ln.split(":", 1)[1].strip() for ln in text.splitlines()
                        if ln.startswith("# Sex:")), "")
            female = {"female": 1, "f": 1, "male": 0, "m": 0}.get(sex.lower(), "")
            rows_csv.append(f"{i},{i},{age},{female},\"{{}}\",1,,records500/cinc/{hea.stem}")
        (cinc / "ptbxl_database.csv").write_text("\n".join(rows_csv) + "\n")
        prepare(cinc, t / "ds-twelve")
        ds, rows, pred, _ = predictions(a.weights, t / "ds-twelve", ["age", "sex"])
        age = ds.column("y_age", rows)
        fem = ds.column("y_sex__female", rows)
        ka, ks = np.isfinite(age), np.isfinite(fem)
        pa = pred["age"].reshape(-1)
        ps = pred["sex"].reshape(len(rows), -1)[:, 0]
        from ecgmoe_cli.training.metrics import auroc

        out["age_sex_12lead"] = {
            "records": int(len(rows)),
            "age_n": int(ka.sum()), "age_mae_years": float(np.mean(np.abs(pa[ka] - age[ka]))),
            "age_trivial_mae_years": float(np.mean(np.abs(age[ka].mean() - age[ka]))),
            "sex_n": int(ks.sum()), "sex_auroc": float(auroc(fem[ks], ps[ks])),
            "sex_accuracy": float(np.mean((ps[ks] >= 0.5) == (fem[ks] == 1))),
            "sex_majority_accuracy": float(max(fem[ks].mean(), 1 - fem[ks].mean())),
        }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
