"""The Holter columns of `predict` against the annotations: af_burden and pvc_count.

Run: .venv/bin/python benchmarks/holter_checks.py [--weights weights] RECORD.hea ...
     (default: MIT-BIH DS1 in ../shared/ecg-train/mitdb and the CPSC 2021 excerpts)
Each record is predicted as a user would (`predict_folder`, shipped weights, default options)
from a folder of symlinks (the data stay in shared/). Prints, per record, the annotated AF
time against af_burden (percentage points) and the annotated V beats against pvc_count; on
records with ventricular flutter also both outside it (its waves carry no beat labels, and the
standard evaluations, EC57, leave it out).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from ecgmoe_cli.io.labels.atr import AAMI_OF_SYMBOL, af_seconds, read_atr
from ecgmoe_cli.io.records.read import read_record
from ecgmoe_cli.pipeline.predict.options import PredictOptions
from ecgmoe_cli.pipeline.predict.run import predict_folder

SHARED = Path(__file__).resolve().parents[2] / "shared"
TRAIN = Path(os.environ.get("ECGMOE_TRAIN_DATA", SHARED / "ecg-train"))
REAL = Path(os.environ.get("ECGMOE_REAL_DATA", SHARED / "ecg-real"))


def flutter_spans(ann) -> list[tuple[float, float]]:
    """The (start, end) seconds of the record's ventricular flutter episodes (`(VFL`)."""
    bounds = np.r_[ann.seg_start, np.inf]
    return [(bounds[i], bounds[i + 1]) for i, name in enumerate(ann.seg_rhythm) if name == "VFL"]


def outside(t: np.ndarray, spans: list[tuple[float, float]]) -> np.ndarray:
    keep = np.ones(t.size, bool)
    for lo, hi in spans:
        keep &= (t < lo) | (t >= hi)
    return keep


def reference(path: Path) -> dict[str, Any]:
    """Annotated AF fraction of the record's time, its V beats (all, and outside ventricular
    flutter, which carries no beat labels: EC57 leaves it out) and its flutter episodes."""
    record = read_record(path)
    ann = read_atr(record)
    assert ann is not None, path
    is_v = np.array([AAMI_OF_SYMBOL.get(s) == "V" for s in ann.beat_sym], bool)
    flutter = flutter_spans(ann)
    return {"af_fraction": af_seconds(ann, record.duration_s) / record.duration_s,
            "V": int(is_v.sum()), "V_outside_flutter": int((is_v & outside(ann.beat_t,
                                                                            flutter)).sum()),
            "flutter": flutter, "beats": int(ann.beat_t.size)}


def predict_paths(paths: list[Path], out: Path, weights: Path | None, beats: bool = False
                  ) -> float:
    """`predict` the records `paths` name, as a user would, from a folder of symlinks beside
    `out` (the data stay where they are) into `out` (and `out`'s `.beats.parquet` with
    `beats`); the seconds it took."""
    folder = out.parent / "records"
    folder.mkdir()
    for p in paths:
        for f in p.parent.glob(p.stem + ".*"):
            (folder / f.name).symlink_to(f.resolve())
    t0 = time.perf_counter()
    predict_folder(folder, out, PredictOptions(weights=weights, beats=beats))
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("records", nargs="*", type=Path)
    ap.add_argument("--weights", type=Path, default=None)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    paths = args.records or (sorted((TRAIN / "mitdb").glob("*.hea"))
                             + sorted((REAL / "cpsc2021").glob("*.hea")))
    with tempfile.TemporaryDirectory() as tmp:
        seconds = predict_paths(paths, Path(tmp) / "out.parquet", args.weights, beats=True)
        rows = {r["record"]: r for r in pq.read_table(Path(tmp) / "out.parquet").to_pylist()}
        beats = pq.read_table(Path(tmp) / "out.beats.parquet",
                              columns=["record", "time_s", "beat_class"]).to_pandas()
    out = {}
    print(f"{len(paths)} records predicted in {seconds:.0f} s (with --beats)\n")
    print("| record | annotated AF % | af_burden % | diff pp | annotated V | pvc_count | diff % "
          "| outside flutter: annotated V / V calls |")
    print("|---|---|---|---|---|---|---|---|")
    for p in paths:
        ref, row = reference(p), rows[p.stem]
        af_ref, af = 100 * ref["af_fraction"], 100 * (row["af_burden"] or 0.0)
        dv = (100 * (row["pvc_count"] - ref["V"]) / ref["V"]) if ref["V"] else float("nan")
        mine = beats[beats["record"] == p.stem]
        v_calls = int(((mine["beat_class"] == "V").to_numpy()
                       & outside(mine["time_s"].to_numpy(), ref["flutter"])).sum())
        out[p.stem] = {"af_ref_pct": af_ref, "af_burden_pct": af, "V_ref": ref["V"],
                       "pvc_count": row["pvc_count"], "n_classified": row["n_classified"],
                       "beats_ref": ref["beats"], "V_ref_outside_flutter":
                       ref["V_outside_flutter"], "V_calls_outside_flutter": v_calls}
        flutter = (f"{ref['V_outside_flutter']} / {v_calls}" if ref["flutter"] else "-")
        print(f"| {p.stem} | {af_ref:.1f} | {af:.1f} | {af - af_ref:+.1f} | {ref['V']} | "
              f"{row['pvc_count']} | {dv:+.1f} | {flutter} |")
    if args.json:
        args.json.write_text(json.dumps({"seconds": seconds, "records": out}, indent=2) + "\n")


if __name__ == "__main__":
    main()
