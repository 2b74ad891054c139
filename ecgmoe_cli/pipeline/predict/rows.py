"""Report rows for `predict`: one per record (window results aggregated), one per window, errors.

Aggregation over the windows of a long record (README, 'Report schema'):
- multilabel findings (rhythm, conduction, ...) can be episodic: each label's probability is
  the MAX over windows (the record shows it if any window does);
- binary tasks describe the patient (sex, potassium): the MEAN over windows;
- `<task>_prob` of a binary/multilabel task is the max of its labels' record probabilities, and
  `<task>_pred` lists the labels at or over their calibrated thresholds (comma-separated);
- multiclass: class probabilities are averaged over windows, the class is their argmax; a
  task with AF classes (afib and its kinds) beside the rhythm task takes one of them exactly
  when rhythm's afib is called (`allowed_classes`), so the two never disagree on AF;
- regression values and rates: the MEDIAN over windows.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ecgmoe_cli.io.files import one_line, safe_text
from ecgmoe_cli.model.inference import WindowOutputs
from ecgmoe_cli.pipeline.predict.schema import pred_labels, regression_column
from ecgmoe_cli.pipeline.prepare import Prepared
from ecgmoe_cli.signal.beats import heart_rate_bpm
from ecgmoe_cli.signal.quality import LOW_QUALITY
from ecgmoe_cli.tasks import AF_LABEL, Task, label_group

SUSTAINED_S = 30.0  # a finding of a long record must hold this long (the AF-episode convention)
KEEP_ERRORS = 20  # failed records kept for the summary and --json (all are in the report)


def weights_id(meta: dict[str, Any], tasks: Sequence[str]) -> str:
    """`<backbone hash 12>-<adapters 8>`: names exactly which tensors produced a report."""
    adapters = meta.get("adapters", {})
    h = hashlib.sha256()
    for t in sorted(tasks):
        h.update(f"{t}:{adapters.get(t, {}).get('tensors_hash', '')};".encode())
    return f"{str(meta['backbone_hash'])[:12]}-{h.hexdigest()[:8]}"


EXPLAIN_TOP_EXPERTS = 3  # experts listed per MoE layer
EXPLAIN_TOP_BEATS = 3  # beats listed per positive call


@dataclass(frozen=True)
class RowContext:
    """What every row of one run shares: tasks, calibrated thresholds, model rate, provenance."""

    tasks: tuple[Task, ...]
    thresholds: dict[str, tuple[float, ...]]
    fs: float  # the model's sampling rate (spec.fs): R-peak indices are in these samples
    weights_id: str
    spec_hash: str
    sustained: int = 1  # consecutive windows a finding must hold over (sustained_windows)


def rhythm_afib(tasks: Sequence[Task]) -> tuple[str, int] | None:
    """The rhythm task's name and the index of its afib label, or None when the run has none."""
    rhythm = next((t for t in tasks if t.name == "rhythm" and AF_LABEL in t.labels), None)
    return None if rhythm is None else (rhythm.name, rhythm.labels.index(AF_LABEL))


def allowed_classes(task: Task, values: dict[str, np.ndarray],
                    thresholds: dict[str, Sequence[float]], tasks: Sequence[Task]
                    ) -> np.ndarray | None:
    """(n,) bool: the classes a multiclass task's argmax may take, or None for all. With AF
    classes (`label_group(.., "afib")`) and the rhythm task's afib beside it: those when
    rhythm's calibrated afib is called, the others when it is not. Rhythm's afib threshold
    is fitted for F1 on AF; an argmax over twelve classes is not (CinC 2017 challenge score,
    fold 9 / untuned fold 10: 0.743 / 0.757 by argmax, 0.759 / 0.759 this way)."""
    afib = rhythm_afib(tasks)
    group = np.array(label_group(task.labels, AF_LABEL))
    if afib is None or afib[0] not in values or not group.any() or group.all():
        return None
    name, i = afib
    return group if values[name][i] >= thresholds[name][i] else ~group


def _task_values(task: Task, p: np.ndarray, thresholds: Sequence[float],
                 allowed: np.ndarray | None = None) -> dict[str, Any]:
    """One task's report columns from its (n_outputs,) record-level outputs (a multiclass
    task's class among `allowed` ones, when given)."""
    values = p.tolist()
    if task.kind in ("binary", "multilabel"):
        cols: dict[str, Any] = {f"{task.name}_{lab}_prob": v for lab, v in zip(task.labels, values)}
        cols[f"{task.name}_prob"] = max(values)
        cols[f"{task.name}_pred"] = ",".join(lab for lab, v, th in
                                             zip(task.labels, values, thresholds) if v >= th)
        return cols
    if task.kind == "multiclass":
        k = int(np.where(allowed, p, -np.inf).argmax()) if allowed is not None else int(p.argmax())
        return {f"{task.name}_class": task.labels[k], f"{task.name}_prob": values[k]}
    return {regression_column(task): values[0]}


def sustained_windows(stride_s: float) -> int:
    """Windows covering SUSTAINED_S: a record's finding is its strongest SUSTAINED_S stretch."""
    return max(1, round(SUSTAINED_S / stride_s))


def aggregate(task: Task, per_window: np.ndarray, sustained: int = 1) -> np.ndarray:
    """(nw, n_outputs) window outputs -> (n_outputs,) record outputs, by the module's rule.

    Multilabel findings take the maximum over windows of their mean over `sustained`
    consecutive windows (all of them when the record is shorter): one noisy 10 s window must
    not make a 30 s record AF (CinC 2017 fold 9: AF F1 0.757 with the plain maximum, 0.814
    with the mean), while a 30 s episode still flags a 24 h Holter.
    """
    if len(per_window) == 1:
        return per_window[0]
    if task.kind == "multilabel":
        k = min(max(sustained, 1), len(per_window))
        c = np.concatenate([np.zeros((1, per_window.shape[1])), np.cumsum(per_window, 0)])
        return ((c[k:] - c[:-k]) / k).max(0)
    if task.kind in ("binary", "multiclass"):
        return per_window.mean(0)
    return np.median(per_window, 0)


def _common(prep: Prepared, ctx: RowContext) -> dict[str, Any]:
    return {"path": safe_text(str(prep.path)), "record": safe_text(str(prep.record)),
            "status": "ok", "error": "",
            "fs_in": float(prep.fs_in), "duration_s": float(prep.duration_s),
            "n_windows": len(prep.n_valid), "leads_used": ",".join(prep.leads_used),
            "lead_warnings": "; ".join(prep.lead_warnings),
            "weights_id": ctx.weights_id, "spec_hash": ctx.spec_hash}


def _low_quality_note(q: float) -> str:
    return f"low signal quality {q:.2f} (< {LOW_QUALITY:g}): predictions not reliable"


def trusted_windows(prep: Prepared) -> tuple[np.ndarray, str]:
    """The windows a record's predictions are aggregated over, and the warning to give.

    Windows under LOW_QUALITY are left out when the record has better ones (an artefact burst
    must not make a Holter an AF record); when all are low, all are used and the row says so.
    """
    low = np.asarray(prep.window_quality) < LOW_QUALITY
    if low.all():
        return np.ones_like(low), _low_quality_note(float(prep.quality))
    if not low.any():
        return ~low, ""
    return ~low, (f"low signal quality (< {LOW_QUALITY:g}) in {int(low.sum())} of {low.size} "
                  f"windows, left out of the record's predictions")


def _with_note(row: dict[str, Any], note: str) -> None:
    if note:
        row["lead_warnings"] = "; ".join(filter(None, [row["lead_warnings"], note]))


def record_row(prep: Prepared, out: WindowOutputs, ctx: RowContext,
               explain: bool = False) -> dict[str, Any]:
    """The one row of an ok record: its trusted windows' outputs aggregated."""
    row = _common(prep, ctx)
    used, note = trusted_windows(prep)
    row.update(heart_rate_bpm=float(prep.heart_rate_bpm), n_beats=int(prep.n_beats),
               quality=float(prep.quality), low_quality=bool(prep.quality < LOW_QUALITY))
    _with_note(row, note)
    values = {t.name: aggregate(t, out.probs[t.name][used], ctx.sustained) for t in ctx.tasks}
    _update_tasks(row, values, ctx)
    if explain:
        row["explain"] = json.dumps(explanation(prep, out, ctx, row), separators=(",", ":"))
    return row


def _update_tasks(row: dict[str, Any], values: dict[str, np.ndarray], ctx: RowContext) -> None:
    """Every task's columns from its record- or window-level outputs."""
    for task in ctx.tasks:
        allowed = (allowed_classes(task, values, ctx.thresholds, ctx.tasks)
                   if task.kind == "multiclass" else None)
        row.update(_task_values(task, values[task.name], ctx.thresholds[task.name], allowed))


def window_rows(prep: Prepared, out: WindowOutputs, ctx: RowContext) -> list[dict[str, Any]]:
    """One row per window (`--windows`): that window's outputs, beats and rate."""
    rows = []
    for w in range(len(prep.n_valid)):
        peaks = prep.rpeaks[w][prep.rpeaks[w] >= 0]
        row = _common(prep, ctx)
        q = float(prep.window_quality[w])
        row.update(window=w, start_s=float(prep.window_start_s[w]),
                   duration_s=float(prep.n_valid[w]) / ctx.fs,
                   heart_rate_bpm=heart_rate_bpm(peaks, ctx.fs),
                   n_beats=len(peaks), quality=q, low_quality=q < LOW_QUALITY)
        _with_note(row, _low_quality_note(q) if q < LOW_QUALITY else "")
        _update_tasks(row, {t.name: out.probs[t.name][w] for t in ctx.tasks}, ctx)
        rows.append(row)
    return rows


def error_row(path: str, record: str, error: str, ctx: RowContext) -> dict[str, Any]:
    """A record that could not be read or prepared: its cause on one line, no outputs."""
    return {"path": safe_text(path), "record": safe_text(record), "status": "error",
            "error": one_line(error) or "unknown error",
            "weights_id": ctx.weights_id, "spec_hash": ctx.spec_hash}


def explanation(prep: Prepared, out: WindowOutputs, ctx: RowContext,
                row: dict[str, Any]) -> dict[str, Any]:
    """Which experts the record's tokens went to, and the beats behind each positive call.

    experts: per MoE layer, the most used experts and their share of the routed tokens.
    beats: for each label over threshold, the R-peak times (s from the record start) of the
    beats with the highest morphology attention in the window where that label peaks. The
    attention pools beats before the task adapters, so it is shared by all tasks.
    """
    experts = {}
    for layer, counts in out.routing.items():
        total = counts.sum(0)
        share = total / max(float(total.sum()), 1.0)
        top = np.argsort(-share, kind="stable")[:EXPLAIN_TOP_EXPERTS]
        experts[layer] = [[int(e), round(float(share[e]), 3)] for e in top]
    beats: dict[str, list[float]] = {}
    for task in ctx.tasks:
        if task.kind not in ("binary", "multilabel") or out.beat_weights is None:
            continue
        for label in pred_labels(row[f"{task.name}_pred"]):
            w = int(out.probs[task.name][:, task.labels.index(label)].argmax())
            valid = prep.rpeaks[w] >= 0
            order = [k for k in np.argsort(-out.beat_weights[w], kind="stable") if valid[k]]
            beats[f"{task.name}_{label}"] = sorted(
                round(float(prep.window_start_s[w] + prep.rpeaks[w][k] / ctx.fs), 3)
                for k in order[:EXPLAIN_TOP_BEATS])
    return {"experts": experts, "beats": beats}


@dataclass
class Tally:
    """Running counts for the end-of-run summary: statuses, per-task positives and the first
    failures (the summary names them; the rest are in the report)."""

    status: Counter[str] = field(default_factory=Counter)
    positives: dict[str, Counter[str]] = field(default_factory=dict)
    errors: list[dict[str, str]] = field(default_factory=list)  # the first KEEP_ERRORS

    def add(self, row: dict[str, Any], tasks: Sequence[Task]) -> None:
        self.status[str(row["status"])] += 1
        if row["status"] != "ok":
            if len(self.errors) < KEEP_ERRORS:
                self.errors.append({"path": str(row["path"]), "error": str(row["error"])})
            return
        for task in tasks:
            c = self.positives.setdefault(task.name, Counter())
            if task.kind in ("binary", "multilabel"):
                labels = pred_labels(row[f"{task.name}_pred"])
                if task.kind == "multilabel":
                    c["(any)"] += bool(labels)
                c.update(labels)
            elif task.kind == "multiclass":
                c[str(row[f"{task.name}_class"])] += 1
