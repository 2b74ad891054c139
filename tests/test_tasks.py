"""The task registry and the shipped code tables, checked against the official PTB-XL and CinC
tables."""

from __future__ import annotations

import csv
import json

import pytest

from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.io.labels.codes import scp_table, snomed_abbrevs, snomed_table
from ecgmoe_cli.tasks import (
    TASKS,
    Task,
    get_task,
    task_from_dict,
    task_to_dict,
    user_task,
)

# The contract of docs/INTERFACES.md (names appear in dataset and report columns).
CONTRACT = {
    "infarction": ("multilabel", "ami imi lmi pmi"),
    "hypertrophy": ("multilabel", "lvh rvh lae rae sehyp"),
    "conduction": ("multilabel", "lbbb rbbb fascicular av_block ivcd wpw"),
    "st_t": ("multilabel", "sttc ischemia long_qt"),
    "rhythm": ("multilabel", "afib tachy brady irregular"),
    "age": ("regression", ""),
    "sex": ("binary", "female"),
    "rr_interval": ("regression", ""),
    "arrhythmia": ("multiclass", "sinus sinus_brady sinus_tachy afib afib_rvr av_block_1 "
                   "sinus_arrhythmia pac pvc paced ectopic_atrial other"),
    "potassium": ("binary", "abnormal"),
    "superclass": ("multilabel", "norm mi sttc cd hyp"),
    "noise": ("binary", "noisy"),
}
SUPERCLASS = {"infarction": "MI", "hypertrophy": "HYP", "conduction": "CD", "st_t": "STTC"}
SUBCLASS_LABEL = {  # PTB-XL diagnostic_subclass -> our label
    "AMI": "ami", "IMI": "imi", "LMI": "lmi", "PMI": "pmi", "LVH": "lvh", "RVH": "rvh",
    "LAO/LAE": "lae", "RAO/RAE": "rae", "SEHYP": "sehyp", "CLBBB": "lbbb", "ILBBB": "lbbb",
    "CRBBB": "rbbb", "IRBBB": "rbbb", "LAFB/LPFB": "fascicular", "_AVB": "av_block",
    "IVCD": "ivcd", "WPW": "wpw", "STTC": "sttc", "NST_": "sttc", "ISC_": "ischemia",
    "ISCA": "ischemia", "ISCI": "ischemia",
}


def _rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_builtin_tasks_match_the_contract():
    assert set(TASKS) == set(CONTRACT)
    for name, (kind, labels) in CONTRACT.items():
        task = get_task(name)
        assert (task.kind, task.labels) == (kind, tuple(labels.split()))
    assert get_task("age").unit == "years" and get_task("rr_interval").unit == "ms"


def test_columns_and_outputs_per_kind():
    labels = "afib tachy brady irregular".split()
    assert get_task("rhythm").columns() == [f"y_rhythm__{x}" for x in labels]
    assert get_task("sex").columns() == ["y_sex__female"]
    assert get_task("age").columns() == ["y_age"]
    assert get_task("arrhythmia").columns() == ["y_arrhythmia"]
    assert [get_task(n).n_outputs for n in ("rhythm", "sex", "age", "arrhythmia")] == [4, 1, 1, 12]
    assert get_task("age").metric == "mae" and get_task("sex").metric == "f1"


@pytest.mark.parametrize("kwargs, words", [
    ({"name": "x", "kind": "ordinal", "labels": ()}, "kind"),
    ({"name": "x", "kind": "binary", "labels": ("a", "b")}, "exactly one"),
    ({"name": "x", "kind": "multiclass", "labels": ("a",)}, "two classes"),
    ({"name": "x", "kind": "regression", "labels": ("a",)}, "no labels"),
    ({"name": "Bad Name", "kind": "regression"}, "name"),
    ({"name": "a__b", "kind": "regression"}, "name"),
    ({"name": "x", "kind": "multilabel", "labels": ("a", "a")}, "unique"),
    ({"name": "x", "kind": "regression", "metric": "rmse"}, "metric"),
])
def test_task_range_checks(kwargs, words):
    with pytest.raises(EcgMoeError, match=words):
        Task(**kwargs)


def test_unknown_task_lists_the_known_ones():
    with pytest.raises(EcgMoeError) as err:
        get_task("kalium")
    assert all(word in str(err.value) for word in ("kalium", "potassium", "rhythm"))


def test_user_task_defaults_and_refuses_builtin_names():
    t = user_task("troponin_high", "binary")
    assert t.labels == ("positive",) and t.columns() == ["y_troponin_high__positive"]
    assert user_task("bnp", "regression", unit="pg/ml").n_outputs == 1
    with pytest.raises(EcgMoeError, match="built in"):
        user_task("potassium", "regression")


def test_task_dict_round_trip_through_json():
    for task in [*TASKS.values(), user_task("grade", "multiclass", ("low", "mid", "high"))]:
        back = task_from_dict(json.loads(json.dumps(task_to_dict(task))))
        assert back == task
    with pytest.raises(EcgMoeError, match="unknown keys"):
        task_from_dict({**task_to_dict(TASKS["age"]), "threshold": 0.5})


def test_scp_table_agrees_with_ptbxl_statements(real_dir):
    statements = {r[""]: r for r in _rows(real_dir / "ptbxl" / "scp_statements.csv")}
    table = scp_table()
    for code, rule in table.items():
        assert code in statements, code
        row = statements[code]
        if rule.task in SUPERCLASS:
            assert row["diagnostic"] == "1.0", code
            assert row["diagnostic_class"] == SUPERCLASS[rule.task], code
            expected = ("long_qt" if "QT" in row["description"]
                        else SUBCLASS_LABEL[row["diagnostic_subclass"]])
            assert rule.labels == (expected,), code
        elif rule.task == "rhythm":
            assert row["rhythm"] == "1.0", code
        else:
            assert rule.task == "" and (rule.arrhythmia or code == "NORM"), code
        if row["diagnostic"] == "1.0":  # the benchmark's superclass, as published
            assert rule.superclass == row["diagnostic_class"].lower(), code
    # coverage: every code of the four diagnostic superclasses and every rhythm code is mapped
    for code, row in statements.items():
        if row["diagnostic"] == "1.0" or row["rhythm"] == "1.0":
            assert code in table, f"{code} is not mapped"


def test_snomed_table_agrees_with_cinc_mapping(real_dir):
    official = {}
    for name in ("dx_mapping_scored.csv", "dx_mapping_unscored.csv"):
        rows = _rows(real_dir / "cinc2021" / name)
        official.update({r["SNOMEDCTCode"]: r["Abbreviation"] for r in rows})
    abbrevs = snomed_abbrevs()
    assert set(abbrevs) == set(snomed_table())
    for code, abbrev in abbrevs.items():
        assert official.get(code) == abbrev, f"{code}: ours {abbrev}, CinC {official.get(code)}"
    # the CinC codes that share a scored diagnosis must feed the same label
    for a, b in (("733534002", "164909002"), ("713427006", "59118001"), ("284470004", "63593006"),
                 ("427172004", "17338001")):
        ra, rb = snomed_table()[a], snomed_table()[b]
        assert (ra.task, ra.labels, ra.arrhythmia) == (rb.task, rb.labels, rb.arrhythmia)


def test_tables_only_name_builtin_labels():
    for table in (scp_table(), snomed_table()):
        for rule in table.values():
            if rule.task:
                assert set(rule.labels) <= set(TASKS[rule.task].labels)
            assert rule.arrhythmia in (*TASKS["arrhythmia"].labels, "other_rhythm", "")
