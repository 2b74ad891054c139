"""The per-beat head (model/beat_head.py) trained on annotated records with a frozen backbone.

```
records with .atr ─prepare─▶ windows ─backbone (no grad)─▶ beat tokens ─┐
    window signal, rpeaks, rr ─beat_features────────────────────────────────────┴─ per beat
  ─match to the annotated beats (150 ms)─▶ AAMI class ─▶ BeatSet ─fit─▶ BeatHead ─▶ heads/
```
`cross_validate` scores it leave-records-out (grouped folds: no record's beats in both the
training and the scored part), as inter-patient results are quoted (de Chazal 2004).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.io.files import atomic_write
from ecgmoe_cli.io.labels.atr import AAMI_OF_SYMBOL, aami_labels, in_af, read_atr
from ecgmoe_cli.io.records.discover import records_under
from ecgmoe_cli.io.records.read import read_record
from ecgmoe_cli.model.batch import BATCH_KEYS, to_torch
from ecgmoe_cli.model.beat_head import BeatHead, BeatHeadConfig, window_relative
from ecgmoe_cli.model.ecgmoe import EcgMoe
from ecgmoe_cli.model.encoders import fold_batchnorm
from ecgmoe_cli.pipeline.prepare import prepare_chunks
from ecgmoe_cli.progress import Progress
from ecgmoe_cli.signal.beat_features import beat_features, record_context
from ecgmoe_cli.signal.spec import PreprocessSpec
from ecgmoe_cli.tasks import AAMI_CLASSES
from ecgmoe_cli.weights.meta import BACKBONE


@dataclass
class BeatSet:
    """The detected beats of some records with their backbone features and reference class."""

    relative: np.ndarray  # (n, d) float32 beat tokens less their window's median one
    features: np.ndarray  # (n, N_BEAT_FEATURES) float32 signal/beat_features
    label: np.ndarray  # (n,) int64 index into AAMI_CLASSES; -1: no annotated beat near
    record: np.ndarray  # (n,) str, the record each beat is from
    in_af: np.ndarray  # (n,) bool: inside an annotated AF or flutter episode
    annotated: dict[str, dict[str, int]]  # record -> AAMI class -> annotated beats
    fs: float  # the rate of the windows the features were computed on


@dataclass(frozen=True)
class BeatFit:
    """How the head is trained: LightGBM's multiclass boosting on the beats' features and
    projected tokens (chosen leave-one-record-out on MIT-BIH DS1, BENCHMARKS.md)."""

    rounds: int = 100
    learning_rate: float = 0.2
    leaves: int = 31  # leaves per tree
    max_depth: int = 6  # a beat walks this many steps per tree at inference
    min_leaf: int = 20  # beats a leaf holds at least
    class_power: float = 1.0  # class weights (n / n_c) ** power: rare S and F beats count more
    n_components: int = 16  # token axes the trees see beside the beat features
    seed: int = 0


@torch.no_grad()
def encode_records(paths: Sequence[Path], model: EcgMoe, spec: PreprocessSpec,
                   batch_size: int = 64, device: str = "cpu",
                   progress: Callable[[], None] | None = None) -> BeatSet:
    """Every detected beat of the annotated records among `paths` through the frozen backbone;
    `progress()` as each path starts."""
    model = fold_batchnorm(model.eval())
    relative, features, labels, records, af = [], [], [], [], []
    annotated: dict[str, dict[str, int]] = {}
    for path in paths:
        if progress:
            progress()
        record = read_record(path)
        ann = read_atr(record)
        if ann is None:
            continue
        counts = {c: 0 for c in AAMI_CLASSES}
        for s in ann.beat_sym:
            if s in AAMI_OF_SYMBOL:
                counts[AAMI_OF_SYMBOL[s]] += 1
        annotated[record.name] = counts
        # block by block, as `predict` sees a long record: the record context is a block's
        for prep in prepare_chunks(record, spec):
            context = record_context(prep.signal, prep.rpeaks, prep.rr, prep.window_start_s,
                                     spec.fs)
            for lo in range(0, len(prep.n_valid), batch_size):
                chunk = {k: getattr(prep, k)[lo:lo + batch_size] for k in BATCH_KEYS}
                batch = to_torch(chunk, device)
                feats = model.encode(batch)
                mask = batch["rpeaks"] >= 0
                valid = chunk["rpeaks"] >= 0
                assert feats.beat_tokens is not None
                relative.append(
                    window_relative(feats.beat_tokens, mask)[mask].float().cpu().numpy())
                features.append(beat_features(chunk["signal"], chunk["rpeaks"], chunk["rr"],
                                              spec.fs, context[lo:lo + batch_size])[valid])
                times = prep.window_start_s[lo:lo + batch_size, None] + chunk["rpeaks"] / spec.fs
                cls = aami_labels(ann, times[valid])
                labels.append(np.array([AAMI_CLASSES.index(c) if c else -1 for c in cls],
                                       np.int64))
                records.append(np.full(len(cls), prep.record))
                af.append(in_af(ann, times[valid]))
        del record
    if not annotated:
        raise EcgMoeError("no record with beat annotations (.atr) among the data")
    return BeatSet(np.concatenate(relative), np.concatenate(features), np.concatenate(labels),
                   np.concatenate(records), np.concatenate(af), annotated, spec.fs)


def fit_head(data: BeatSet, rows: np.ndarray, fit: BeatFit) -> BeatHead:
    """A fresh head trained on the labelled beats among `rows`."""
    rows = rows[data.label[rows] >= 0]
    if rows.size == 0:
        raise EcgMoeError("no annotated beat to train the beat head on")
    relative = torch.as_tensor(data.relative[rows])
    mean = relative.mean(0)
    # the token axes: principal directions of the training beats' relative tokens
    axes = torch.linalg.svd(relative - mean, full_matrices=False).Vh[:fit.n_components]
    shell = BeatHead(BeatHeadConfig(d_model=relative.shape[1], n_components=len(axes),
                                    fs=data.fs))
    shell.token_mean.copy_(mean)
    shell.token_axes.copy_(axes)
    with torch.no_grad():  # the trees learn from exactly what the head computes at inference
        x = shell.inputs(relative, torch.as_tensor(data.features[rows])).numpy()
    x = np.nan_to_num(x, nan=0.0)  # NaN as 0, as there: LightGBM learns no missing branch
    y = data.label[rows]
    n_c = np.bincount(y, minlength=len(AAMI_CLASSES))
    weight = np.where(n_c > 0, (len(y) / np.maximum(n_c, 1)) ** fit.class_power, 0.0)[y]
    return head_from_booster(train_booster(x, y, weight, fit), shell)


def train_booster(x: np.ndarray, y: np.ndarray, weight: np.ndarray, fit: BeatFit) -> Any:
    """The LightGBM multiclass booster of inputs `x` (n, F + P) and classes `y`."""
    import lightgbm as lgb

    params = {"objective": "multiclass", "num_class": len(AAMI_CLASSES),
              "learning_rate": fit.learning_rate, "num_leaves": fit.leaves,
              "max_depth": fit.max_depth, "min_data_in_leaf": fit.min_leaf, "lambda_l2": 1.0,
              "seed": fit.seed, "deterministic": True, "force_row_wise": True, "verbosity": -1}
    return lgb.train(params, lgb.Dataset(x, y, weight=weight), num_boost_round=fit.rounds)


def head_from_booster(booster: Any, shell: BeatHead) -> BeatHead:
    """`shell` (its token axes set) with the trees of a LightGBM multiclass booster, whose
    `dump_model` is the documented description of every split and leaf."""
    dump = booster.dump_model()
    k = int(dump["num_class"])
    if k != len(AAMI_CLASSES):
        raise EcgMoeError(f"beat booster has {k} classes, not {len(AAMI_CLASSES)}")
    trees = [_flatten(t["tree_structure"]) for t in dump["tree_info"]]
    n_nodes = max(len(nodes) for nodes, _ in trees)
    config = BeatHeadConfig(**{**shell.config.to_dict(), "n_trees": len(trees),
                               "n_nodes": n_nodes, "depth": max(d for _, d in trees)})
    head = BeatHead(config)
    head.token_mean.copy_(shell.token_mean)
    head.token_axes.copy_(shell.token_axes)
    arrays = {name: np.zeros((len(trees), n_nodes), dtype) for name, dtype in (
        ("split_input", np.int64), ("threshold", np.float32), ("left", np.int64),
        ("right", np.int64), ("leaf_value", np.float32))}
    arrays["left"][:] = arrays["right"][:] = np.arange(n_nodes)  # padding: leaves of value 0
    for i, (nodes, _) in enumerate(trees):
        for j, node in enumerate(nodes):
            for name, value in node.items():
                arrays[name][i, j] = value
    for name, value in arrays.items():
        getattr(head, name).copy_(torch.from_numpy(value))
    head.tree_class.copy_(torch.arange(len(trees)) % k)  # LightGBM: round by round, class order
    return head.eval()


def _flatten(root: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    """One LightGBM tree as a node list (the root first; a leaf's children are itself) and its
    depth."""
    nodes: list[dict[str, Any]] = []
    depth = 0

    def visit(node: dict[str, Any], level: int) -> int:
        nonlocal depth
        j = len(nodes)
        nodes.append({})
        if "leaf_value" in node:
            depth = max(depth, level)
            nodes[j] = {"left": j, "right": j, "leaf_value": node["leaf_value"]}
            return j
        if node.get("decision_type", "<=") != "<=":
            raise EcgMoeError(f"beat booster split {node.get('decision_type')!r} is not <=")
        left = visit(node["left_child"], level + 1)
        right = visit(node["right_child"], level + 1)
        nodes[j] = {"split_input": node["split_feature"], "left": left, "right": right,
                    "threshold": _float32_at_most(node["threshold"])}
        return j

    visit(root, 0)
    return nodes, depth


def _float32_at_most(t: float) -> np.float32:
    """The largest float32 <= t: for float32 inputs x, x <= it exactly when x <= t, as LightGBM
    compares them in double precision."""
    f = np.float32(t)
    # float(f), not f: NumPy 2 would compare the two in float32 and call them equal
    return np.nextafter(f, np.float32(-np.inf)) if float(f) > t else f


@torch.no_grad()
def classify(head: BeatHead, data: BeatSet, rows: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """The predicted class index of each beat in `rows`, a chunk at a time: each beat walks
    every tree, (chunk, trees) nodes at once."""
    parts = np.array_split(rows, max(1, -(-len(rows) // chunk)))  # never empty: [rows] at least
    return np.concatenate([head(torch.as_tensor(data.relative[part]),
                                torch.as_tensor(data.features[part])).argmax(-1).numpy()
                           for part in parts])


def record_folds(records: np.ndarray, k: int) -> list[np.ndarray]:
    """k groups of record names (sorted, dealt round-robin): every record in exactly one."""
    names = np.array(sorted(set(records.tolist())))
    if not 2 <= k <= len(names):
        raise EcgMoeError(f"--folds must be in [2, {len(names)}] for {len(names)} records, got {k}")
    return [names[i::k] for i in range(k)]


def cross_validate(data: BeatSet, k: int, fit: BeatFit,
                   progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Leave-records-out predictions: each fold's beats classified by a head trained on the
    other folds' records. Returns the predicted class index per beat (n,)."""
    pred = np.full(len(data.label), -1, np.int64)
    folds = record_folds(data.record, k)
    for i, held in enumerate(folds):
        test = np.isin(data.record, held)
        head = fit_head(data, np.flatnonzero(~test), fit)
        pred[test] = classify(head, data, np.flatnonzero(test))
        if progress:
            progress(i + 1, len(folds))
    return pred


def beat_metrics(label: np.ndarray, pred: np.ndarray, records: np.ndarray | None = None
                 ) -> dict[str, Any]:
    """Confusion matrix (rows: reference, columns: predicted, AAMI order) and per-class
    sensitivity (Se), positive predictivity (PPV) and counts, over the annotated beats; with
    `records`, each record's reference and predicted V and S beats too."""
    k = len(AAMI_CLASSES)
    known = label >= 0
    cm = np.bincount(label[known] * k + pred[known], minlength=k * k).reshape(k, k)
    per = {}
    for i, name in enumerate(AAMI_CLASSES):
        tp, n_ref, n_pred = int(cm[i, i]), int(cm[i].sum()), int(cm[:, i].sum())
        per[name] = {"n": n_ref, "predicted": n_pred,
                     "se": tp / n_ref if n_ref else None, "ppv": tp / n_pred if n_pred else None}
    out = {"classes": list(AAMI_CLASSES), "confusion": cm.tolist(), "per_class": per,
           "accuracy": float(np.trace(cm) / max(cm.sum(), 1)), "n": int(cm.sum()),
           "unmatched_detections": int((~known).sum())}
    if records is not None:
        out["per_record"] = {
            str(r): {f"{c}_{kind}": int((v[records == r] == AAMI_CLASSES.index(c)).sum())
                     for c in ("V", "S") for kind, v in (("ref", label), ("pred", pred))}
            for r in sorted(set(records.tolist()))}
    return out


def held_out_metrics(data: BeatSet, pred: np.ndarray, folds: int) -> dict[str, Any]:
    """`beat_metrics` of leave-records-out predictions over every beat, with the same over the
    beats outside annotated AF episodes beside (`outside_af`): inside them `predict` calls no
    beat S, and AAMI labels their irregular beats N."""
    out = data.in_af
    return {"folds": folds, **beat_metrics(data.label, pred, data.record),
            "outside_af": beat_metrics(data.label[~out], pred[~out])}


def train_beat_head(data_dirs: Sequence[Path], backbone: Path, output: Path, fit: BeatFit,
                    folds: int = 0, device: str = "cpu", progress: bool = False
                    ) -> dict[str, Any]:
    """Encode the annotated records under `data_dirs` with the backbone of `backbone`, score the
    head leave-records-out when folds >= 2, train it on every record and write it (and, when
    `output` is another folder, the backbone beside it) into `output`. Returns a summary."""
    from ecgmoe_cli.weights import store

    t0 = time.perf_counter()
    model, spec, meta = store.load_model(backbone, tasks=[], device=device)
    paths = [p for d in data_dirs for p in records_under(Path(d))]
    with Progress("beat head: encoding records", len(paths), progress, unit="records") as bar:
        data = encode_records(paths, model, spec, device=device,
                              progress=lambda: bar.update(advance=1))
    metrics: dict[str, Any] = {"records": sorted(data.annotated), "fit": fit.__dict__}
    if folds >= 2:
        with Progress("beat head: record folds", folds, progress, unit="folds") as bar:
            pred = cross_validate(data, folds, fit,
                                  progress=lambda i, n: bar.update(completed=i, total=n))
        metrics["leave_records_out"] = held_out_metrics(data, pred, folds)
    head = fit_head(data, np.arange(len(data.label)), fit)
    if Path(output).resolve() != Path(backbone).resolve():  # the head needs its backbone beside
        for name in (f"{BACKBONE}.json", f"{BACKBONE}.safetensors"):  # copied, not re-saved:
            src = Path(backbone) / name  # the loaded model's BatchNorm is folded for encoding
            atomic_write(Path(output) / name, lambda tmp, src=src: shutil.copyfile(src, tmp))
    path = store.save_beat_head(head, output, meta["backbone_hash"], metrics)
    return {"head": str(path), "beats": int((data.label >= 0).sum()),
            "records": len(data.annotated), "seconds": round(time.perf_counter() - t0, 1),
            "metrics": metrics}
