"""Label sources on real headers (issue 2, must-show 4): CinC 2021 and a PTB-XL tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from ecgmoe_cli.io.labels import open_label_source
from ecgmoe_cli.io.readers import read_header, read_record

DIAGNOSTIC = ("infarction", "hypertrophy", "conduction", "st_t")


def _cinc(real_dir: Path, name: str) -> dict[str, float]:
    source = open_label_source(real_dir / "cinc2021", "auto")
    assert source.kind == "cinc"
    labels = source.labels_for(read_header(real_dir / f"cinc2021/{name}.hea"))
    assert labels == source.labels_for(read_record(real_dir / f"cinc2021/{name}.hea"))
    return labels


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
    rec = read_header(ptbxl_tree / "records100/00000/00001_lr.hea")
    y = source.labels_for(rec)
    diagnostic = {k: v for k, v in y.items() if k.split("__")[0][2:] in DIAGNOSTIC}
    assert diagnostic and all(v == 0 for v in diagnostic.values()), diagnostic
    assert y["y_age"] == 56 and y["y_sex__female"] == 1
    assert source.fold_for(rec) == 3
