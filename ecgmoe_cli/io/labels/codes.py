"""Diagnostic code tables (PTB-XL SCP, CinC SNOMED-CT, MIMIC report phrases) -> task targets.

The tables are the project's own (ecgmoe_cli/data/*.csv). A row maps one code to labels of
one task and/or to an arrhythmia class key. Labels written `?a|b` mean "this code says the
task applies but not which label": those labels become unknown (NaN) instead of 0.

One arrhythmia class per record: the first class key in ARRHYTHMIA_PRIORITY that any of the
record's codes gives. Rarer, more specific findings outrank plain sinus variants, and named
non-sinus rhythms without a class of their own (SVT, VT, 2nd/3rd degree block, junctional)
rank just below AF as `other_rhythm`; weaker unnamed ectopy (bigeminy of unknown origin,
supraventricular arrhythmia) is `other` and outranks only the sinus variants.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from importlib import resources

from ecgmoe_cli.tasks import ARRHYTHMIA_CLASSES, TASKS

DIAGNOSTIC_TASKS = ("infarction", "hypertrophy", "conduction", "st_t", "rhythm")
ARRHYTHMIA_PRIORITY = ("paced", "afib_rvr", "afib", "other_rhythm", "ectopic_atrial", "pvc",
                       "pac", "av_block_1", "other", "sinus_brady", "sinus_tachy",
                       "sinus_arrhythmia", "sinus")
NAN = float("nan")


@dataclass(frozen=True)
class CodeRule:
    """What one code says: labels of one task (or unsure over them), an arrhythmia key and,
    for PTB-XL's diagnostic statements, the superclass the PTB-XL benchmark scores it under."""

    task: str
    labels: tuple[str, ...]
    unsure: bool
    arrhythmia: str
    superclass: str = ""


def _read_table(name: str) -> list[dict[str, str]]:
    text = resources.files("ecgmoe_cli").joinpath("data", name).read_text(encoding="utf-8")
    return list(csv.DictReader(text.splitlines()))


def _rule(row: dict[str, str]) -> CodeRule:
    labels = row["labels"] or ""
    unsure = labels.startswith("?")
    return CodeRule(row["task"] or "", tuple(x for x in labels.lstrip("?").split("|") if x),
                    unsure, row["arrhythmia"] or "", row.get("superclass") or "")


@cache
def scp_table() -> dict[str, CodeRule]:
    """PTB-XL SCP statement code -> rule."""
    return {r["code"]: _rule(r) for r in _read_table("scp_map.csv")}


@cache
def snomed_table() -> dict[str, CodeRule]:
    """CinC 2020/2021 SNOMED-CT code (as a string) -> rule."""
    return {r["code"]: _rule(r) for r in _read_table("snomed_map.csv")}


@cache
def snomed_abbrevs() -> dict[str, str]:
    """SNOMED-CT code -> the CinC abbreviation it was mapped under (for checks and docs)."""
    return {r["code"]: r["abbrev"] for r in _read_table("snomed_map.csv")}


@cache
def mimic_rules() -> tuple[tuple[re.Pattern[str], CodeRule], ...]:
    """(compiled phrase, rule) for lower-cased MIMIC-IV-ECG machine report text."""
    return tuple((re.compile(r["pattern"]),
                  CodeRule("rhythm" if r["rhythm"] else "", tuple(r["rhythm"].split("|"))
                           if r["rhythm"] else (), False, r["arrhythmia"] or ""))
                 for r in _read_table("mimic_phrases.csv"))


def arrhythmia_class(keys: Iterable[str]) -> str | None:
    """The record's one class by priority; None when no key says anything about rhythm."""
    present = set(keys)
    for key in ARRHYTHMIA_PRIORITY:
        if key in present:
            return "other" if key == "other_rhythm" else key
    return None


def class_index(name: str) -> float:
    return float(ARRHYTHMIA_CLASSES.index(name))


def targets_from_rules(rules: Iterable[CodeRule], tasks: Iterable[str]) -> dict[str, float]:
    """Target columns of `tasks` (multilabel) plus y_arrhythmia from the record's rules.

    Every listed code is known, so a label no code names is 0, unless an unsure code
    names it (NaN); a label a code names for sure is 1.
    """
    rules = list(rules)
    out: dict[str, float] = {}
    for name in tasks:
        for label in TASKS[name].labels:
            out[f"y_{name}__{label}"] = 0.0
    for r in rules:
        if r.unsure:
            for label in r.labels:
                col = f"y_{r.task}__{label}"
                if col in out and out[col] == 0.0:
                    out[col] = NAN
    for r in rules:
        if not r.unsure:
            for label in r.labels:
                if f"y_{r.task}__{label}" in out:
                    out[f"y_{r.task}__{label}"] = 1.0
    cls = arrhythmia_class(r.arrhythmia for r in rules if r.arrhythmia)
    out["y_arrhythmia"] = class_index(cls) if cls else NAN
    return out


def codes_to_targets(codes: Iterable[str], table: dict[str, CodeRule],
                     tasks: Iterable[str] = DIAGNOSTIC_TASKS) -> dict[str, float]:
    """Targets from a record's code list; codes missing from the table are ignored."""
    return targets_from_rules((table[c] for c in codes if c in table), tasks)


def superclass_targets(codes: Iterable[str], table: dict[str, CodeRule]) -> dict[str, float]:
    """PTB-XL superdiagnostic targets as the benchmark builds them (every listed code counts,
    likelihood ignored); a record with no diagnostic statement is unknown, as the benchmark
    leaves it out, and so are the four diagnostic tasks that statements of that kind feed."""
    found = {table[c].superclass for c in codes if c in table and table[c].superclass}
    if found:
        return {f"y_superclass__{lb}": float(lb in found) for lb in TASKS["superclass"].labels}
    morphology = [t for t in DIAGNOSTIC_TASKS if t != "rhythm"]
    return {c: NAN for name in ("superclass", *morphology) for c in TASKS[name].columns()}


def report_to_targets(text: str) -> dict[str, float]:
    """Rhythm labels and arrhythmia class from machine report text; all NaN when empty."""
    text = " ".join(text.lower().split())
    if not text:
        out = {f"y_rhythm__{lb}": NAN for lb in TASKS["rhythm"].labels}
        out["y_arrhythmia"] = NAN
        return out
    return targets_from_rules((rule for pat, rule in mimic_rules() if pat.search(text)),
                              ("rhythm",))
