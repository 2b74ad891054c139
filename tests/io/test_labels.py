"""Label sources on real headers (issue 2, must-show 4): CinC 2021 and a PTB-XL tree."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from ecgmoe_cli.io.labels.detect import open_label_source
from ecgmoe_cli.io.records.read import read_record

DIAGNOSTIC = ("infarction", "hypertrophy", "conduction", "st_t")


def _cinc(real_dir: Path, name: str) -> dict[str, float]:
    source = open_label_source(real_dir / "cinc2021", "auto")
    assert source.kind == "cinc"
    return source.labels_for(read_record(real_dir / f"cinc2021/{name}.hea"))


def test_e07505_lvh_age_77_female(real_dir: Path) -> None:
    y = _cinc(real_dir, "E07505")
    assert y["y_hypertrophy__lvh"] == 1
    assert y["y_age"] == 77 and y["y_sex__female"] == 1
    assert y["y_conduction__rbbb"] == 0 and y["y_rhythm__afib"] == 0


def test_e07509_rbbb_and_brady(real_dir: Path) -> None:
    y = _cinc(real_dir, "E07509")
    assert y["y_conduction__rbbb"] == 1 and y["y_rhythm__brady"] == 1
    assert y["y_rhythm__tachy"] == 0 and y["y_sex__female"] == 0


def test_hr06003_tachy(real_dir: Path) -> None:
    y = _cinc(real_dir, "HR06003")
    assert y["y_rhythm__tachy"] == 1 and y["y_rhythm__brady"] == 0


@pytest.fixture()
def ptbxl_tree(tmp_path: Path, real_dir: Path) -> Path:
    """A PTB-XL-format tree whose one record links to the real 00001_lr in place."""
    root = tmp_path / "ptbxl tree"
    folder = root / "records100" / "00000"
    folder.mkdir(parents=True)
    for ext in ("hea", "dat"):
        (folder / f"00001_lr.{ext}").symlink_to(real_dir / f"ptbxl/00001_lr.{ext}")
    (root / "ptbxl_database.csv").write_text(
        "ecg_id,patient_id,age,sex,scp_codes,strat_fold,filename_lr,filename_hr\n"
        "1,15709.0,56.0,1,\"{'NORM': 100.0, 'LVOLT': 0.0, 'SR': 0.0}\",3,"
        "records100/00000/00001_lr,records500/00000/00001_hr\n")
    return root


def test_ptbxl_00001_norm_56_female(ptbxl_tree: Path) -> None:
    source = open_label_source(ptbxl_tree, "auto")
    assert source.kind.startswith("ptbxl")
    rec = read_record(ptbxl_tree / "records100/00000/00001_lr.hea")
    y = source.labels_for(rec)
    diagnostic = {k: v for k, v in y.items() if k.split("__")[0][2:] in DIAGNOSTIC}
    assert diagnostic and all(v == 0 for v in diagnostic.values()), diagnostic
    assert y["y_age"] == 56 and y["y_sex__female"] == 1
    assert source.fold_for(rec) == 3


def _ptbxl_codes(tmp_path: Path, codes: str) -> dict[str, float]:
    """Labels of a one-row PTB-XL database holding `codes` (the record need not exist)."""
    import numpy as np

    from ecgmoe_cli.io.records.record import Record

    (tmp_path / "ptbxl_database.csv").write_text(
        "ecg_id,patient_id,age,sex,scp_codes,strat_fold,filename_lr\n"
        f"7,1.0,300,0,\"{codes}\",9,records100/00000/00007_lr\n")
    source = open_label_source(tmp_path, "auto")
    rec = Record(str(tmp_path / "records100/00000/00007_lr.hea"), "00007_lr",
                 np.zeros((1, 10), np.float32), 100.0, ["I"])
    return source.labels_for(rec)


def test_ptbxl_superclasses_as_the_benchmark_builds_them(tmp_path: Path) -> None:
    # likelihood 0 still counts; form (LVOLT) and rhythm (SR) codes give no superclass
    y = _ptbxl_codes(tmp_path, "{'IMI': 50.0, 'LVH': 0.0, 'NST_': 100.0, 'LVOLT': 0.0, 'SR': 0.0}")
    assert [y[f"y_superclass__{k}"] for k in ("norm", "mi", "sttc", "cd", "hyp")] == [0, 1, 1, 0, 1]
    assert y["y_infarction__imi"] == 1 and y["y_hypertrophy__lvh"] == 1
    assert math.isnan(y["y_age"])  # 300 (over 89) is not an age


def test_ptbxl_record_without_diagnostic_statement_is_unknown_not_normal(tmp_path: Path) -> None:
    import math

    y = _ptbxl_codes(tmp_path, "{'SR': 0.0, 'LVOLT': 100.0}")
    unknown = [k for k in y if k.split("__")[0][2:] in (*DIAGNOSTIC, "superclass")]
    assert len(unknown) == 4 + 5 + 6 + 3 + 5 and all(math.isnan(y[k]) for k in unknown)
    assert y["y_rhythm__afib"] == 0 and y["y_arrhythmia"] == 0  # SR: sinus


def test_cinc2017_reference_gives_rhythm_class_and_noise(tmp_path: Path) -> None:
    import math

    import numpy as np

    from ecgmoe_cli.errors import EcgMoeError
    from ecgmoe_cli.io.records.record import Record
    from ecgmoe_cli.tasks import ARRHYTHMIA_CLASSES

    (tmp_path / "REFERENCE.csv").write_text("A00001,N\nA00002,A\nA00003,O\nA00004,~\n")
    source = open_label_source(tmp_path, "auto")
    assert source.kind == "cinc2017"
    assert [t.name for t in source.tasks] == ["rhythm", "arrhythmia", "noise"]

    def labels(name: str) -> dict[str, float]:
        rec = Record(str(tmp_path / f"{name}.hea"), name, np.zeros((1, 9), np.float32), 300.0,
                     ["ECG"])
        return source.labels_for(rec)

    n, a, o, noisy, unlisted = (labels(f"A0000{i}") for i in range(1, 6))
    assert (n["y_rhythm__afib"], ARRHYTHMIA_CLASSES[int(n["y_arrhythmia"])]) == (0, "sinus")
    assert (a["y_rhythm__afib"], ARRHYTHMIA_CLASSES[int(a["y_arrhythmia"])]) == (1, "afib")
    assert (o["y_rhythm__afib"], ARRHYTHMIA_CLASSES[int(o["y_arrhythmia"])]) == (0, "other")
    assert math.isnan(n["y_rhythm__tachy"])  # the reference says nothing of the rate
    assert noisy["y_noise__noisy"] == 1 and n["y_noise__noisy"] == 0
    assert math.isnan(noisy["y_rhythm__afib"]) and math.isnan(noisy["y_arrhythmia"])
    assert all(math.isnan(v) for v in unlisted.values())
    (tmp_path / "REFERENCE.csv").write_text("A00001,X\n")
    with pytest.raises(EcgMoeError, match="line 1"):
        open_label_source(tmp_path, "auto")


@pytest.mark.real
def test_ptbxl_superclasses_match_the_benchmark_on_the_real_database(train_dir: Path) -> None:
    """Every record of ../shared/ecg-train/ptbxl: our targets equal the benchmark's recipe
    (scp_statements' diagnostic_class of every listed code), computed here independently."""
    import ast
    import math

    import numpy as np
    import pandas as pd

    from ecgmoe_cli.io.records.record import Record

    root = train_dir / "ptbxl"
    db = pd.read_csv(root / "ptbxl_database.csv")
    statements = pd.read_csv(root / "scp_statements.csv", index_col=0)
    diagnostic = statements[statements.diagnostic == 1]["diagnostic_class"]
    source = open_label_source(root, "auto")
    assert source.kind == "ptbxl" and "superclass" in [t.name for t in source.tasks]
    empty = 0
    for row in db.itertuples():
        expected = {diagnostic[c] for c in ast.literal_eval(row.scp_codes) if c in diagnostic.index}
        rec = Record(str(root / f"{row.filename_lr}.hea"), Path(row.filename_lr).name,
                     np.zeros((1, 1), np.float32), 100.0, ["I"])
        y = source.labels_for(rec)
        got = [y[f"y_superclass__{k.lower()}"] for k in ("NORM", "MI", "STTC", "CD", "HYP")]
        if not expected:
            empty += 1
            assert all(math.isnan(v) for v in got), row.ecg_id
        else:
            assert got == [float(k in expected) for k in ("NORM", "MI", "STTC", "CD", "HYP")]
    assert 0 < empty < len(db) // 10  # a few records hold only form or rhythm statements
