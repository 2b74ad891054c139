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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.io.files import atomic_write
from ecgmoe_cli.io.labels.atr import AAMI_OF_SYMBOL, aami_labels, read_atr
from ecgmoe_cli.io.records.discover import records_under
from ecgmoe_cli.io.records.read import read_record
from ecgmoe_cli.model.batch import BATCH_KEYS, to_torch
from ecgmoe_cli.model.beat_head import BeatHead, BeatHeadConfig, window_relative
from ecgmoe_cli.model.ecgmoe import EcgMoe
from ecgmoe_cli.model.encoders import fold_batchnorm
from ecgmoe_cli.pipeline.prepare import prepare_chunks
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
    annotated: dict[str, dict[str, int]]  # record -> AAMI class -> annotated beats
    fs: float  # the rate of the windows the features were computed on


@dataclass(frozen=True)
class BeatFit:
    """How the head is trained: a few passes of AdamW over a small MLP."""

    epochs: int = 20
    batch_size: int = 1024
    lr: float = 2e-3
    weight_decay: float = 1e-2
    class_power: float = 0.5  # class weights (n / n_c) ** power: rare S and F beats count more
    seed: int = 0


@torch.no_grad()
def encode_records(paths: Sequence[Path], model: EcgMoe, spec: PreprocessSpec,
                   batch_size: int = 64, device: str = "cpu") -> BeatSet:
    """Every detected beat of the annotated records among `paths` through the frozen backbone."""
    model = fold_batchnorm(model.eval())
    relative, features, labels, records = [], [], [], []
    annotated: dict[str, dict[str, int]] = {}
    for path in paths:
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
        del record
    if not annotated:
        raise EcgMoeError("no record with beat annotations (.atr) among the data")
    return BeatSet(np.concatenate(relative), np.concatenate(features), np.concatenate(labels),
                   np.concatenate(records), annotated, spec.fs)


@contextmanager
def _one_thread(device: str) -> Iterator[None]:
    """A small MLP trains several times faster on one CPU thread than on contended ones."""
    saved = torch.get_num_threads()
    if device == "cpu":
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def fit_head(data: BeatSet, rows: np.ndarray, fit: BeatFit, device: str = "cpu") -> BeatHead:
    """A fresh head trained on the labelled beats among `rows`."""
    with _one_thread(device):
        return _fit_head(data, rows, fit, device)


def _fit_head(data: BeatSet, rows: np.ndarray, fit: BeatFit, device: str) -> BeatHead:
    rows = rows[data.label[rows] >= 0]
    if rows.size == 0:
        raise EcgMoeError("no annotated beat to train the beat head on")
    torch.manual_seed(fit.seed)
    head = BeatHead(BeatHeadConfig(d_model=data.relative.shape[1], fs=data.fs)).to(device)
    r = torch.as_tensor(data.relative[rows], device=device)
    f = torch.as_tensor(data.features[rows], device=device)
    y = torch.as_tensor(data.label[rows], device=device)
    head.feature_mean.copy_(f.mean(0))
    head.feature_std.copy_(f.std(0).clamp_min(1e-3))
    n_c = torch.bincount(y, minlength=len(AAMI_CLASSES)).float()
    weight = torch.where(n_c > 0, (len(y) / n_c.clamp_min(1.0)) ** fit.class_power, 0.0)
    opt = torch.optim.AdamW(head.parameters(), lr=fit.lr, weight_decay=fit.weight_decay)
    steps = fit.epochs * -(-len(y) // fit.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, fit.lr, total_steps=steps)
    g = torch.Generator().manual_seed(fit.seed)
    head.train()
    for _ in range(fit.epochs):
        for idx in torch.randperm(len(y), generator=g).split(fit.batch_size):
            idx = idx.to(device)
            loss = F.cross_entropy(head(r[idx], f[idx]), y[idx], weight=weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return head.eval()


@torch.no_grad()
def classify(head: BeatHead, data: BeatSet, rows: np.ndarray, device: str = "cpu") -> np.ndarray:
    """The predicted class index of each beat in `rows`."""
    r = torch.as_tensor(data.relative[rows], device=device)
    f = torch.as_tensor(data.features[rows], device=device)
    return head(r, f).argmax(-1).cpu().numpy()


def record_folds(records: np.ndarray, k: int) -> list[np.ndarray]:
    """k groups of record names (sorted, dealt round-robin): every record in exactly one."""
    names = np.array(sorted(set(records.tolist())))
    if not 2 <= k <= len(names):
        raise EcgMoeError(f"--folds must be in [2, {len(names)}] for {len(names)} records, got {k}")
    return [names[i::k] for i in range(k)]


def cross_validate(data: BeatSet, k: int, fit: BeatFit, device: str = "cpu",
                   progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Leave-records-out predictions: each fold's beats classified by a head trained on the
    other folds' records. Returns the predicted class index per beat (n,)."""
    pred = np.full(len(data.label), -1, np.int64)
    folds = record_folds(data.record, k)
    for i, held in enumerate(folds):
        test = np.isin(data.record, held)
        head = fit_head(data, np.flatnonzero(~test), fit, device)
        pred[test] = classify(head, data, np.flatnonzero(test), device)
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


def train_beat_head(data_dirs: Sequence[Path], backbone: Path, output: Path, fit: BeatFit,
                    folds: int = 0, device: str = "cpu") -> dict[str, Any]:
    """Encode the annotated records under `data_dirs` with the backbone of `backbone`, score the
    head leave-records-out when folds >= 2, train it on every record and write it (and, when
    `output` is another folder, the backbone beside it) into `output`. Returns a summary."""
    from ecgmoe_cli.weights import store

    t0 = time.perf_counter()
    model, spec, meta = store.load_model(backbone, tasks=[], device=device)
    paths = [p for d in data_dirs for p in records_under(Path(d))]
    data = encode_records(paths, model, spec, device=device)
    metrics: dict[str, Any] = {"records": sorted(data.annotated), "fit": fit.__dict__}
    if folds >= 2:
        metrics["leave_records_out"] = {"folds": folds,
                                        **beat_metrics(data.label,
                                                       cross_validate(data, folds, fit, device),
                                                       data.record)}
    head = fit_head(data, np.arange(len(data.label)), fit, device)
    if Path(output).resolve() != Path(backbone).resolve():  # the head needs its backbone beside
        for name in (f"{BACKBONE}.json", f"{BACKBONE}.safetensors"):  # copied, not re-saved:
            src = Path(backbone) / name  # the loaded model's BatchNorm is folded for encoding
            atomic_write(Path(output) / name, lambda tmp, src=src: shutil.copyfile(src, tmp))
    path = store.save_beat_head(head, output, meta["backbone_hash"], metrics)
    return {"head": str(path), "beats": int((data.label >= 0).sum()),
            "records": len(data.annotated), "seconds": round(time.perf_counter() - t0, 1),
            "metrics": metrics}
