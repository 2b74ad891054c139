"""Weights on real validation records, measured as ECG papers measure them (issue 22).

Run (datasets made by `ecgmoe preprocess`, e.g. by `make real-data`):
  W=data/weights-build; .venv/bin/python benchmarks/real_eval.py --weights weights \
      --ptbxl $W/ptbxl-ds --cinc2017 $W/cinc2017-ds --mitdb $W/mitdb-ds \
      --annotated $W/cpsc2021-ds [--twelve-lead $W/cinc2021-ds] [--fold 9] [--json out.json]

- PTB-XL (strat_fold 9 by default): superdiagnostic macro AUROC over NORM, MI, STTC, CD, HYP
  on the records with at least one diagnostic statement (the PTB-XL benchmark's protocol),
  from the `superclass` task; for weights without it, derived from the diagnostic tasks (MI =
  infarction, STTC = st_t, CD = conduction, HYP = hypertrophy, NORM = 1 - their maximum);
  macro AUROC of each diagnostic task; age MAE and sex AUROC against trivial predictors.
- CinC 2017 (hash fold 9): per record (windows aggregated as `predict` does), AF F1 and AUROC
  from `rhythm_afib`, and the challenge score: mean F1 of N, A, O over the 4-class confusion
  (N = a sinus class, A = afib / afib_rvr, O = any other class, ~ = `noise` called), the class
  as `predict` reports it (AF classes exactly when rhythm's afib is called).
- MIT-BIH / CPSC 2021 / SVDB: per 10 s window against the `.atr` rhythm, AF AUROC and the share
  of non-AF windows called AF, per record and pooled, with the records' training folds named.
- 12-lead records with diagnoses (CinC 2021): records right on all five diagnostic tasks,
  precision and recall of the calls, age MAE and sex against trivial predictors.
Every figure has n and a 95 % bootstrap CI (resampling records); a fold under 30 records or
a label under 10 positives is flagged as tiny.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

SINUS = ("sinus", "sinus_brady", "sinus_tachy", "sinus_arrhythmia")
AF = ("afib", "afib_rvr")
SUPER = ("norm", "mi", "sttc", "cd", "hyp")
DERIVED = {"mi": "infarction", "sttc": "st_t", "cd": "conduction", "hyp": "hypertrophy"}
TINY_N, TINY_POS = 30, 10


def load(weights: Path) -> Any:
    from ecgmoe_cli.model.encoders import fold_batchnorm
    from ecgmoe_cli.weights.store import load_model

    model, _, _ = load_model(weights)
    fold_batchnorm(model.eval())
    return model


def window_outputs(model: Any, ds_path: Path, folds: list[int] | None) -> tuple[Any, Any, dict]:
    """(dataset, rows, task -> calibrated outputs per window) for the tasks the model has."""
    from ecgmoe_cli.io.dataset import open_dataset
    from ecgmoe_cli.training.outputs import predictions

    ds = open_dataset(ds_path)
    rows = ds.rows(fold=folds)
    return ds, rows, predictions(model, ds, rows, list(model.tasks), 64, "cpu")


def by_record(ds: Any, rows: np.ndarray) -> tuple[list[str], list[np.ndarray]]:
    """Record paths and, for each, the positions in `rows` of its windows."""
    idx = ds.index.set_index("row").loc[rows]
    paths = idx["path"].to_numpy()
    names, first = np.unique(paths, return_index=True)
    order = np.argsort(first)
    return [str(names[i]) for i in order], [np.flatnonzero(paths == names[i]) for i in order]


def per_record(model: Any, pred: dict, groups: list[np.ndarray], stride_s: float
               ) -> dict[str, np.ndarray]:
    """Window outputs aggregated per record by `predict`'s rule."""
    from ecgmoe_cli.pipeline.predict.rows import aggregate, sustained_windows

    k = sustained_windows(stride_s)
    return {t: np.stack([aggregate(model.tasks[t], v[g], k) for g in groups])
            for t, v in pred.items()}


def record_classes(model: Any, rec: dict[str, np.ndarray], task: str) -> list[str]:
    """Each record's class of a multiclass task as `predict` reports it (its argmax, among the
    classes `allowed_classes` leaves)."""
    from ecgmoe_cli.pipeline.predict.rows import allowed_classes

    tasks = [model.tasks[t] for t in rec]
    thresholds = {t: model.heads[t].thresholds for t in rec}
    labels = model.tasks[task].labels
    out = []
    for i in range(len(rec[task])):
        allowed = allowed_classes(model.tasks[task], {t: v[i] for t, v in rec.items()},
                                  thresholds, tasks)
        p = rec[task][i] if allowed is None else np.where(allowed, rec[task][i], -np.inf)
        out.append(labels[int(p.argmax())])
    return out


def auroc_ci(y: np.ndarray, p: np.ndarray, n_boot: int) -> dict[str, Any]:
    from ecgmoe_cli.training.metrics import auroc, bootstrap_ci

    known = np.isfinite(y)
    y, p = y[known], p[known]
    a = auroc(y, p)
    lo, hi = bootstrap_ci(auroc, y, p, n_boot=n_boot) if np.isfinite(a) else (np.nan, np.nan)
    return {"n": int(len(y)), "positives": int(y.sum()), "auroc": _num(a),
            "ci": [_num(lo), _num(hi)], "tiny": bool(len(y) < TINY_N or y.sum() < TINY_POS)}


def _num(x: float) -> float | None:
    return round(float(x), 4) if np.isfinite(x) else None


def macro_auroc_ci(y: np.ndarray, p: np.ndarray, n_boot: int) -> dict[str, Any]:
    """Macro AUROC over columns with both classes, CI by resampling records (rows)."""
    from ecgmoe_cli.training.metrics import auroc, bootstrap_ci

    def macro(yy: np.ndarray, pp: np.ndarray) -> float:
        vals = [auroc(yy[:, j], pp[:, j]) for j in range(yy.shape[1])]
        vals = [v for v in vals if np.isfinite(v)]
        return float(np.mean(vals)) if len(vals) == yy.shape[1] else float("nan")

    keep = np.isfinite(y).all(1)
    y, p = y[keep], p[keep]
    cols = [j for j in range(y.shape[1]) if 0 < y[:, j].sum() < len(y)]
    y, p = y[:, cols], p[:, cols]
    lo, hi = bootstrap_ci(macro, y, p, n_boot=n_boot)
    return {"n": int(len(y)), "labels_scored": len(cols), "macro_auroc": _num(macro(y, p)),
            "ci": [_num(lo), _num(hi)]}


def ptbxl(model: Any, path: Path, fold: int, n_boot: int) -> dict[str, Any]:
    from ecgmoe_cli.training.metrics import mae

    ds, rows, pred = window_outputs(model, path, [fold])
    tasks = model.tasks
    out: dict[str, Any] = {"fold": fold, "records": int(len(rows))}
    y_super = ds.targets(rows, [ds_task(ds, "superclass")])["superclass"]
    if "superclass" in pred:
        p_super = pred["superclass"]
        out["superdiagnostic"] = macro_auroc_ci(y_super, p_super, n_boot)
        out["superdiagnostic"]["labels"] = {
            lb: auroc_ci(y_super[:, j], p_super[:, j], n_boot) for j, lb in enumerate(SUPER)}
    if all(t in pred for t in DERIVED.values()):
        cols = {k: pred[t].max(1) for k, t in DERIVED.items()}
        derived = np.stack([1 - np.max(np.stack(list(cols.values())), 0),
                            *[cols[k] for k in SUPER[1:]]], 1)
        out["superdiagnostic_derived"] = macro_auroc_ci(y_super, derived, n_boot)
    out["tasks"] = {}
    for name in ("infarction", "hypertrophy", "conduction", "st_t", "rhythm"):
        if name in pred:
            y = ds.targets(rows, [tasks[name]])[name]
            per = [auroc_ci(y[:, j], pred[name][:, j], 0) for j in range(y.shape[1])]
            aucs = [r["auroc"] for r in per if r["auroc"] is not None]
            out["tasks"][name] = {"macro_auroc": _num(np.mean(aucs)) if aucs else None,
                                  "labels": dict(zip(tasks[name].labels, per, strict=True))}
    train = ds.rows(fold=list(range(1, 9)))
    if "age" in pred:
        y = ds.targets(rows, [tasks["age"]])["age"]
        mean_age = float(np.nanmean(ds.targets(train, [tasks["age"]])["age"]))
        k = np.isfinite(y)
        out["age"] = {"n": int(k.sum()), "mae": _num(mae(y[k], pred["age"].reshape(-1)[k])),
                      "mae_trivial_train_mean": _num(mae(y[k], np.full(k.sum(), mean_age)))}
    if "sex" in pred:
        y = ds.targets(rows, [tasks["sex"]])["sex"][:, 0]
        k = np.isfinite(y)
        called = pred["sex"][:, 0] >= model.heads["sex"].thresholds[0]
        out["sex"] = auroc_ci(y, pred["sex"][:, 0], n_boot) | {
            "accuracy": _num(np.mean(called[k] == y[k].astype(bool))),
            "accuracy_majority": _num(max(y[k].mean(), 1 - y[k].mean()))}
    return out


def ds_task(ds: Any, name: str) -> Any:
    from ecgmoe_cli.tasks import get_task

    return next((t for t in ds.tasks if t.name == name), get_task(name))


def challenge_f1(truth: list[str], called: list[str]) -> dict[str, float | None]:
    """CinC 2017 scoring: F1 of each class from the 4-class confusion; score = mean of N, A, O."""
    t, c = np.array(truth), np.array(called)
    f1 = {}
    for k in ("N", "A", "O", "~"):
        denom = (t == k).sum() + (c == k).sum()
        f1[k] = _num(2 * ((t == k) & (c == k)).sum() / denom) if denom else None
    parts = [f1[k] for k in "NAO"]
    f1["score"] = _num(np.mean(parts)) if None not in parts else None
    return f1


def cinc2017(model: Any, path: Path, fold: int, n_boot: int) -> dict[str, Any]:
    from ecgmoe_cli.tasks import ARRHYTHMIA_CLASSES
    from ecgmoe_cli.training.metrics import f1_score

    ds, rows, pred = window_outputs(model, path, [fold])
    names, groups = by_record(ds, rows)
    rec = per_record(model, pred, groups, ds.spec.stride_s)
    first = rows[[g[0] for g in groups]]
    afib = ds.targets(first, [ds_task(ds, "rhythm")])["rhythm"][:, 0]
    noisy = ds.targets(first, [ds_task(ds, "noise")])["noise"][:, 0] == 1
    arr = ds.targets(first, [ds_task(ds, "arrhythmia")])["arrhythmia"]
    truth = ["~" if n else "A" if a == 1 else
             "N" if ARRHYTHMIA_CLASSES[int(c)] in SINUS else "O"
             for n, a, c in zip(noisy, afib, np.nan_to_num(arr), strict=True)]
    p_af = rec["rhythm"][:, 0]
    af_called = p_af >= model.heads["rhythm"].thresholds[0]
    noise_called = (rec["noise"][:, 0] >= model.heads["noise"].thresholds[0] if "noise" in rec
                    else np.zeros(len(names), bool))
    cls = record_classes(model, rec, "arrhythmia")
    called = ["~" if nz else "A" if c in AF else "N" if c in SINUS else "O"
              for nz, c in zip(noise_called, cls, strict=True)]
    k = ~noisy
    y_af = np.where(noisy, np.nan, (np.array(truth) == "A").astype(float))
    out = {"fold": fold, "records": len(names), "windows": int(len(rows)),
           "classes": {c: truth.count(c) for c in "NAO~"},
           "af_binary": auroc_ci(y_af, p_af, n_boot) | {
               "f1": _num(f1_score(y_af[k] == 1, af_called[k])),
               "called_share": _num(af_called[k].mean()),
               "f1_always_af": _num(f1_score(y_af[k] == 1, np.ones(k.sum(), bool)))},
           "challenge": challenge_f1(truth, called),
           "challenge_majority": challenge_f1(truth, ["N"] * len(truth))}
    return out


def annotated_windows(model: Any, path: Path, n_boot: int, folds: list[int] | None = None
                      ) -> dict[str, Any]:
    """Per-window AF against `.atr` rhythm: pooled AUROC and false-AF share, per record."""
    ds, rows, pred = window_outputs(model, path, folds)
    names, groups = by_record(ds, rows)
    y = ds.targets(rows, [ds_task(ds, "rhythm")])["rhythm"][:, 0]
    p = pred["rhythm"][:, 0]
    called = p >= model.heads["rhythm"].thresholds[0]
    fold = ds.index.set_index("row").loc[rows, "fold"].to_numpy()
    records = {}
    for name, g in zip(names, groups, strict=True):
        yy, cc = y[g], called[g]
        records[Path(name).stem] = {
            "fold": int(fold[g[0]]), "windows": int(len(g)), "af_windows": int(np.nansum(yy)),
            "af_called_on_non_af": _num(cc[yy == 0].mean()) if (yy == 0).any() else None,
            "af_missed": _num(1 - cc[yy == 1].mean()) if (yy == 1).any() else None}
    non_af = y == 0
    return {"windows": int(len(rows)), "af": auroc_ci(y, p, n_boot),
            "af_called_on_non_af": _num(called[non_af].mean()) if non_af.any() else None,
            "records": records}


def twelve_lead_labels(model: Any, path: Path) -> dict[str, Any]:
    """Every window of a 12-lead dataset with diagnoses (e.g. CinC 2021 headers): the five
    diagnostic tasks' calls at their thresholds against the labels; age and sex."""
    from ecgmoe_cli.training.metrics import auroc, mae

    ds, rows, pred = window_outputs(model, path, None)
    right = np.ones(len(rows), bool)
    tp = fp = fn = 0
    per_label: dict[str, list[int]] = {}  # label -> [positives, found, false calls]
    for name in ("infarction", "hypertrophy", "conduction", "st_t", "rhythm"):
        task = model.tasks[name]
        y = ds.targets(rows, [task])[name]
        called = pred[name] >= np.array(model.heads[name].thresholds)
        known = np.isfinite(y)
        t, c = (y == 1) & known, called & known
        right &= ~((t != c) & known).any(1)
        tp, fp, fn = tp + int((t & c).sum()), fp + int((c & ~t).sum()), fn + int((t & ~c).sum())
        for j, lb in enumerate(task.labels):
            counts = [int(t[:, j].sum()), int((t & c)[:, j].sum()), int((c & ~t)[:, j].sum())]
            if any(counts):
                per_label[lb] = counts
    exact = int(right.sum())
    age = ds.column("y_age", rows)
    fem = ds.column("y_sex__female", rows)
    ka, ks = np.isfinite(age), np.isfinite(fem)
    called_f = pred["sex"][:, 0] >= model.heads["sex"].thresholds[0]
    return {"records": int(len(rows)), "all_five_tasks_right": int(exact),
            "precision": _num(tp / (tp + fp)) if tp + fp else None,
            "recall": _num(tp / (tp + fn)) if tp + fn else None,
            "labels_positives_found_false_calls": per_label,
            "age_mae": _num(mae(age[ka], pred["age"].reshape(-1)[ka])),
            "age_mae_mean": _num(mae(age[ka], np.full(ka.sum(), age[ka].mean()))),
            "sex_right": int((called_f[ks] == (fem[ks] == 1)).sum()), "sex_n": int(ks.sum()),
            "sex_majority": int(max(fem[ks].sum(), (1 - fem[ks]).sum())),  # always one sex
            "sex_auroc": _num(auroc(fem[ks], pred["sex"][ks, 0]))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", type=Path, default=Path("weights"))
    ap.add_argument("--ptbxl", type=Path)
    ap.add_argument("--cinc2017", type=Path)
    ap.add_argument("--mitdb", type=Path, help="MIT-BIH dataset: scored on folds 9-10 "
                    "(records held out of training) and, apart, on every record")
    ap.add_argument("--annotated", type=Path, action="append", default=[],
                    help="other datasets with .atr rhythm (CPSC 2021, SVDB): every window")
    ap.add_argument("--twelve-lead", type=Path, help="12-lead records with diagnoses, age and "
                    "sex (e.g. ../shared/ecg-real/cinc2021 preprocessed): every window")
    ap.add_argument("--fold", type=int, default=9)
    ap.add_argument("--bootstrap", type=int, default=500)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    model = load(args.weights)
    out: dict[str, Any] = {"weights": str(args.weights)}
    if args.ptbxl:
        out["ptbxl"] = ptbxl(model, args.ptbxl, args.fold, args.bootstrap)
    if args.cinc2017:
        out["cinc2017"] = cinc2017(model, args.cinc2017, args.fold, args.bootstrap)
    if args.mitdb:
        out["mitdb_held_out"] = annotated_windows(model, args.mitdb, args.bootstrap, [9, 10])
        out["mitdb_all"] = annotated_windows(model, args.mitdb, args.bootstrap)
    if args.twelve_lead:
        out["twelve_lead"] = twelve_lead_labels(model, args.twelve_lead)
    for path in args.annotated:
        out[path.name] = annotated_windows(model, path, args.bootstrap)
    text = json.dumps(out, indent=1)
    if args.json:
        args.json.write_text(text + "\n")
    sys.stdout.write(text + "\n")


if __name__ == "__main__":
    main()
