"""`predict --beats` on patients the beat head never saw: S and V per record against .atr beat
annotations, PAC / PVC per record against PTB-XL's statements, and the ectopy calls of CinC
2017's single-lead records by their rhythm label.

Run: .venv/bin/python benchmarks/beats_external.py [--weights weights]
     [--atr RECORD.hea ...] [--ptbxl ../shared/ecg-train/ptbxl]
     [--cinc2017 ../shared/ecg-train/cinc2017]
     (default --atr: MIT-BIH 100, SVDB 800 and the CPSC 2021 excerpts of ../shared/ecg-real;
     --atr alone, --ptbxl '' or --cinc2017 '' leaves that part out; 75 s in all)
Beat level: an annotated beat is found when the beat `predict` reports within 150 ms of it has
its class (`aami_labels`). Record level (PTB-XL, records without AF or flutter): a record is
called when it has a PAC (PVC) and labelled when its scp_codes hold PAC, PSVT, SVTAC or SVARR
(PVC); PTB-XL does not name every ectopic beat, so PPV there is a floor. Also counted: records
whose only rhythm statement beyond sinus is sinus arrhythmia (SARRH) or that are NORM alone,
called PAC. CinC 2017 (AliveCor lead I, read with the lead map ECG=I) has no beat reference:
per REFERENCE.csv class, the share of records with at least one V (S) call.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from holter_checks import REAL, TRAIN, predict_paths

from ecgmoe_cli.io.labels.atr import aami_labels, read_atr
from ecgmoe_cli.io.labels.cinc2017 import Cinc2017Source
from ecgmoe_cli.io.labels.ptbxl import parse_scp_codes
from ecgmoe_cli.io.records.read import read_record
from ecgmoe_cli.pipeline.predict.options import PredictOptions
from ecgmoe_cli.pipeline.predict.run import predict_folder

_PAC = {"PAC", "PSVT", "SVTAC", "SVARR"}
_ECTOPY = _PAC | {"PRC(S)", "PVC", "BIGU", "TRIGU"}


def beat_level(paths: list[Path], weights: Path | None) -> dict[str, dict[str, int]]:
    """Per record: annotated S and V beats, how many were found, and the S and V calls."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.parquet"
        predict_paths(paths, out, weights, beats=True)
        beats = pd.read_parquet(out.with_name("out.beats.parquet"))
    res = {}
    for p in paths:
        g = beats[beats.record == p.stem]
        ref = np.array(aami_labels(read_atr(read_record(p)), g.time_s.to_numpy()))
        called = g.beat_class.to_numpy()
        res[p.stem] = {f"{c}_{k}": int(v) for c in "SV" for k, v in (
            ("annotated", (ref == c).sum()), ("found", ((ref == c) & (called == c)).sum()),
            ("calls", (called == c).sum()))}
    return res


def ptbxl_level(root: Path, weights: Path | None) -> dict[str, float | int]:
    """Record-level PAC and PVC Se / PPV on the PTB-XL records under `root`."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.parquet"
        predict_paths(sorted(root.glob("records100/*/*.hea")), out, weights)
        rows = pd.read_parquet(out)
    db_path = root / "ptbxl_database.csv"
    db = pd.read_csv(db_path)
    db["record"] = db.filename_lr.str.split("/").str[-1]
    m = rows.merge(db, on="record")
    codes = m.scp_codes.map(lambda text: set(parse_scp_codes(text, db_path)))
    keep = ~codes.map(lambda c: bool(c & {"AFIB", "AFLT"}))
    res: dict[str, float | int] = {"records": int(keep.sum())}
    for name, labels, col in (("pac", _PAC, "pac_count"), ("pvc", {"PVC"}, "pvc_count")):
        y = codes.map(lambda c, lab=labels: bool(c & lab)) & keep
        called = (m[col] > 0) & keep
        tp = int((y & called).sum())
        res |= {f"{name}_labelled": int(y.sum()), f"{name}_called": int(called.sum()),
                f"{name}_se": round(tp / max(int(y.sum()), 1), 3),
                f"{name}_ppv": round(tp / max(int(called.sum()), 1), 3)}
    pac = m.pac_count > 0
    for name, only in (("sarrh", codes.map(lambda c: "SARRH" in c and not c & _ECTOPY)),
                       ("norm", codes.map(lambda c: "NORM" in c
                                          and not c & (_ECTOPY | {"SARRH"})))):
        res[f"{name}_only"] = int((only & keep).sum())
        res[f"{name}_only_called_pac"] = int((only & keep & pac).sum())
    return res


def cinc2017_level(root: Path, weights: Path | None) -> dict[str, dict[str, float | int]]:
    """Per CinC 2017 class: records, and the share with at least one V and one S call."""
    labels = Cinc2017Source(root).labels
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.parquet"
        predict_folder(root, out, PredictOptions(weights=weights, lead_map={"ECG": "I"}))
        rows = pd.read_parquet(out)
    rows["label"] = rows.record.map(labels)
    return {label: {"records": len(g), "any_v": round(float((g.pvc_count > 0).mean()), 3),
                    "any_s": round(float((g.pac_count > 0).mean()), 3)}
            for label, g in rows.dropna(subset=["label"]).groupby("label")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", type=Path, default=None)
    ap.add_argument("--atr", nargs="*", type=Path)
    ap.add_argument("--ptbxl", type=Path, default=TRAIN / "ptbxl")
    ap.add_argument("--cinc2017", type=Path, default=TRAIN / "cinc2017")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    paths = args.atr if args.atr is not None else (
        [REAL / "wfdb-sample" / "100.hea", REAL / "svdb" / "800.hea"]
        + sorted((REAL / "cpsc2021").glob("*.hea")))
    out: dict[str, object] = {}
    if paths:
        out["beats"] = beat_level(paths, args.weights)
        print("| record | S annotated / found / calls | V annotated / found / calls |")
        print("|---|---|---|")
        for rec, r in out["beats"].items():  # type: ignore[union-attr]
            print(f"| {rec} | {r['S_annotated']} / {r['S_found']} / {r['S_calls']} | "
                  f"{r['V_annotated']} / {r['V_found']} / {r['V_calls']} |")
    if args.ptbxl and (args.ptbxl / "ptbxl_database.csv").is_file():
        out["ptbxl"] = r = ptbxl_level(args.ptbxl, args.weights)
        print(f"\nPTB-XL, {r['records']} records without AF or flutter: PAC Se / PPV "
              f"{r['pac_se']} / {r['pac_ppv']} ({r['pac_labelled']} labelled, {r['pac_called']} "
              f"called); PVC {r['pvc_se']} / {r['pvc_ppv']} ({r['pvc_labelled']}, "
              f"{r['pvc_called']}); sinus arrhythmia only, called PAC: "
              f"{r['sarrh_only_called_pac']} of {r['sarrh_only']}; NORM only: "
              f"{r['norm_only_called_pac']} of {r['norm_only']}")
    if args.cinc2017 and (args.cinc2017 / "REFERENCE.csv").is_file():
        out["cinc2017"] = c = cinc2017_level(args.cinc2017, args.weights)
        print("\nCinC 2017 (single lead), records with at least one V / S call, by rhythm label:")
        for label, r in c.items():
            print(f"  {label}: {r['records']} records, any V {100 * r['any_v']:.1f} %, "
                  f"any S {100 * r['any_s']:.1f} %")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
