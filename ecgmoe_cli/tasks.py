"""The task registry: what each prediction target is, its labels and how it is scored.

Label names end up in dataset columns (`y_<task>__<label>`) and report columns, so the
built-in ones are fixed; users add tasks of their own from labels.csv via `user_task`.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from ecgmoe_cli.errors import EcgMoeError

KINDS = ("binary", "multilabel", "multiclass", "regression")
METRICS = ("auroc", "f1", "accuracy", "macro_f1", "mae")
DEFAULT_METRIC = {"binary": "f1", "multilabel": "auroc", "multiclass": "accuracy",
                  "regression": "mae"}
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")  # no "__": it separates task and label in columns


def _bad_name(name: str) -> bool:
    return not _NAME.match(name) or "__" in name


@dataclass(frozen=True)
class Task:
    """One prediction target; `labels` are label names (binary/multilabel) or classes."""

    name: str  # lower-case identifier, used in column names
    kind: str  # binary | multilabel | multiclass | regression
    # one for binary, >= 1 for multilabel, >= 2 classes; none for regression
    labels: tuple[str, ...] = ()
    unit: str = ""  # regression unit (years, ms)
    metric: str = ""  # headline metric; empty picks the kind's default
    description: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", tuple(self.labels))
        if not self.metric:
            object.__setattr__(self, "metric", DEFAULT_METRIC.get(self.kind, ""))
        problems = []
        if _bad_name(self.name):
            problems.append(f"name {self.name!r} must be lower-case letters, digits and single _")
        if self.kind not in KINDS:
            problems.append(f"kind {self.kind!r} is not one of {', '.join(KINDS)}")
        n = len(self.labels)
        if self.kind == "binary" and n != 1:
            problems.append(f"a binary task has exactly one label, got {n}")
        if self.kind == "multilabel" and n < 1:
            problems.append("a multilabel task needs at least one label")
        if self.kind == "multiclass" and n < 2:
            problems.append(f"a multiclass task needs at least two classes, got {n}")
        if self.kind == "regression" and n:
            problems.append("a regression task has no labels")
        if len(set(self.labels)) != n:
            problems.append("labels must be unique")
        bad = [lb for lb in self.labels if self.kind != "multiclass" and _bad_name(lb)]
        if bad:
            problems.append(f"label names {bad} must be lower-case letters, digits and single _")
        if self.metric not in METRICS:
            problems.append(f"metric {self.metric!r} is not one of {', '.join(METRICS)}")
        if problems:
            raise EcgMoeError(f"task {self.name!r}: " + "; ".join(problems))

    def columns(self) -> list[str]:
        """Target column names in datasets: one per label, or one for the class/value."""
        if self.kind in ("binary", "multilabel"):
            return [f"y_{self.name}__{lb}" for lb in self.labels]
        return [f"y_{self.name}"]

    @property
    def n_outputs(self) -> int:
        """Width of the task head: one logit per label or class, one value for regression."""
        return 1 if self.kind == "regression" else len(self.labels)


def _t(name: str, kind: str, labels: str = "", unit: str = "", metric: str = "",
       description: str = "") -> Task:
    return Task(name, kind, tuple(labels.split()), unit, metric, description)


# AAMI EC57 beat classes of the per-beat head (model/beat_head.py): normal and bundle-branch,
# supraventricular ectopic, ventricular ectopic, fusion, paced or unclassifiable
AAMI_CLASSES = ("N", "S", "V", "F", "Q")
ARRHYTHMIA_CLASSES = ("sinus", "sinus_brady", "sinus_tachy", "afib", "afib_rvr", "av_block_1",
                      "sinus_arrhythmia", "pac", "pvc", "paced", "ectopic_atrial", "other")

TASKS: dict[str, Task] = {t.name: t for t in (
    _t("infarction", "multilabel", "ami imi lmi pmi",
       description="myocardial infarction by location (PTB-XL MI subclasses)"),
    _t("hypertrophy", "multilabel", "lvh rvh lae rae sehyp",
       description="ventricular hypertrophy and atrial enlargement (PTB-XL HYP)"),
    _t("conduction", "multilabel", "lbbb rbbb fascicular av_block ivcd wpw",
       description="bundle branch, fascicular and AV blocks, IVCD, pre-excitation (PTB-XL CD)"),
    _t("st_t", "multilabel", "sttc ischemia long_qt",
       description="ST/T changes, ischaemia, long QT (PTB-XL STTC)"),
    _t("rhythm", "multilabel", "afib tachy brady irregular",
       description="AF/flutter, tachycardia, bradycardia, irregular rhythm"),
    _t("age", "regression", unit="years", description="patient age"),
    _t("sex", "binary", "female", description="patient sex (1 = female)"),
    _t("rr_interval", "regression", unit="ms", description="mean RR interval"),
    Task("arrhythmia", "multiclass", ARRHYTHMIA_CLASSES,
         description="dominant rhythm class (the ECG-MoE paper's MIMIC-IV-ECG task)"),
    _t("potassium", "binary", "abnormal", description="abnormal serum potassium (K+)"),
    _t("superclass", "multilabel", "norm mi sttc cd hyp",
       description="PTB-XL diagnostic superclasses, scored as the PTB-XL benchmark does"),
    _t("noise", "binary", "noisy", description="too noisy to classify (CinC 2017 '~')"),
)}


# Labels that describe the patient or say the ECG is normal: reported, never a finding (a
# `plot --report` of flagged records must not draw every woman's or every normal ECG).
NOT_FINDINGS: dict[str, tuple[str, ...]] = {"sex": ("female",), "superclass": ("norm",)}
# A binary trait's two values, for display: its empty `_pred` is the first, not "no finding".
TRAIT_VALUES: dict[str, tuple[str, str]] = {"sex": ("male", "female")}


AF_LABEL = "afib"  # rhythm's AF label; a multiclass task's AF classes are it and its kinds


def label_group(labels: tuple[str, ...], label: str) -> tuple[bool, ...]:
    """Which of a multiclass task's classes are `label` or a kind of it (`afib` and
    `afib_rvr`): the classes RR evidence on `label` moves, and what an AF call allows."""
    return tuple(c == label or c.startswith(label + "_") for c in labels)


def is_finding(task: str, label: str) -> bool:
    """Whether a label over its threshold is a finding worth a look."""
    return label not in NOT_FINDINGS.get(task, ())


def get_task(name: str) -> Task:
    """A built-in task by name; the error lists the known ones."""
    try:
        return TASKS[name]
    except KeyError:
        raise EcgMoeError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}") from None


def user_task(name: str, kind: str, labels: tuple[str, ...] | list[str] = (),
              unit: str = "") -> Task:
    """A task defined by a labels.csv column; a binary task without labels gets `positive`."""
    if name in TASKS:
        raise EcgMoeError(f"task {name!r} is built in; pick another name for a user task")
    if kind == "binary" and not labels:
        labels = ("positive",)
    return Task(name, kind, tuple(labels), unit, description="user task from labels.csv")


def task_to_dict(task: Task) -> dict[str, Any]:
    """JSON-ready dict (labels as a list)."""
    d = asdict(task)
    d["labels"] = list(task.labels)
    return d


def task_from_dict(d: dict[str, Any]) -> Task:
    """Inverse of `task_to_dict`; unknown keys are an error, not silently dropped."""
    fields = {"name", "kind", "labels", "unit", "metric", "description"}
    extra = set(d) - fields
    if extra or "name" not in d or "kind" not in d:
        raise EcgMoeError(f"bad task dict {d!r}: needs name and kind, unknown keys {sorted(extra)}")
    return Task(**{**d, "labels": tuple(d.get("labels", ()))})
