"""Find the record files under a folder: recursive, sorted, deterministic, tolerant.

A WFDB record is listed as its .hea (and may be named without it, as wfdb does: `.../100`);
EDF, BDF (24-bit EDF), CSV and NPY files as themselves; hospital exports (DICOM ECG, with or
without an extension, and HL7 aECG, GE MUSE or Philips XML) by their content (`io/sniff.py`).
Files that are not records (signal .dat/.mat files, annotations, notes, label tables, DICOM
images, other XML) are skipped. Symlinked folders are followed once (a link back up the tree
cannot loop) when they stay inside the folder searched (a link to `/` is not walked), and a
file reached through two paths is listed once. A folder or file whose path is longer than the
system can open (ENAMETOOLONG: a record 40 folders deep) is listed anyway, so that reading it
gives the row that says so instead of silence. The segments of a multi-segment WFDB record are
part of its master header's record, not records of their own.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.io.records.sniff import is_export

RECORD_SUFFIXES = (".hea", ".edf", ".bdf", ".csv", ".npy")
EXPORTS = "DICOM ECG, HL7 aECG / GE MUSE / Philips .xml"  # found by content, not suffix
# CSV files in a corpus that hold tables, not signals.
_NOT_RECORDS = {"labels.csv", "records.csv", "ptbxl_database.csv", "scp_statements.csv",
                "record_list.csv", "machine_measurements.csv", "dx_mapping_scored.csv",
                "dx_mapping_unscored.csv", "patients.csv", "reference.csv", "answers.csv",
                "ranking.csv"}


def is_record_file(path: Path) -> bool:
    if path.suffix.lower() in RECORD_SUFFIXES:
        return path.name.lower() not in _NOT_RECORDS
    return is_export(path)


def discover_records(root: Path) -> list[Path]:
    """Every record file under `root` (or `root` itself when it is a file), sorted by path."""
    root = Path(root)
    if root.is_file():
        return [root]
    if not root.is_dir():
        header = root.with_name(root.name + ".hea")  # a WFDB record named as wfdb does: 100
        if header.is_file():
            return [header]
        raise EcgMoeError("no such folder or file", root)
    home = root.resolve()
    found: dict[tuple[int, int], Path] = {}
    seen_dirs: set[tuple[int, int]] = set()
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            st = folder.stat()
        except OSError as e:
            if e.errno == errno.ENAMETOOLONG:
                found[(-1, len(found))] = folder  # its row says why nothing in it is read
            continue
        if (st.st_dev, st.st_ino) in seen_dirs:
            continue  # a symlink back into the tree, or a second link to one folder
        seen_dirs.add((st.st_dev, st.st_ino))
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue  # unreadable folder: its records cannot be listed
        for e in entries:
            p = Path(e.path)
            try:
                if e.is_dir(follow_symlinks=True):
                    if not e.is_symlink() or p.resolve().is_relative_to(home):
                        stack.append(p)  # a linked folder out of INPUT (even `/`) is not walked
                elif e.is_file(follow_symlinks=True) and is_record_file(p):
                    fst = p.stat()
                    key = (fst.st_dev, fst.st_ino)
                    if key not in found or str(p) < str(found[key]):
                        found[key] = p
            except OSError as err:
                if err.errno == errno.ENAMETOOLONG:
                    found[(-1, len(found))] = p
                continue  # a dangling link
    return sorted(_without_segments(list(found.values())), key=lambda p: str(p))


def records_under(root: Path) -> list[Path]:
    """`discover_records`, or an EcgMoeError naming the formats looked for when it finds none."""
    paths = discover_records(root)
    if not paths:
        raise EcgMoeError(f"no ECG records found (WFDB {', '.join(RECORD_SUFFIXES)}, {EXPORTS})",
                          root)
    return paths


def _without_segments(paths: list[Path]) -> list[Path]:
    """Drop the segment headers of multi-segment WFDB records (MIMIC-III waveforms: the master
    `3000003.hea` lists `3000003_layout`, `3000003_0001`, ...): the master reads them as one
    record, so they are not records of their own. Only a header whose name prefixes another's
    (`NAME_...`) is opened to check, so a plain corpus costs no extra reads."""
    from bisect import bisect_left

    from ecgmoe_cli.io.records.wfdb_fast import parse_header

    by_folder: dict[Path, list[str]] = {}
    for p in paths:
        if p.suffix.lower() == ".hea":
            by_folder.setdefault(p.parent, []).append(p.stem)
    drop: set[Path] = set()
    for folder, stems in by_folder.items():
        stems.sort()
        for stem in stems:
            i = bisect_left(stems, stem + "_")
            if i == len(stems) or not stems[i].startswith(stem + "_"):
                continue
            try:
                header = parse_header(folder / (stem + ".hea"))
            except EcgMoeError:
                continue  # reading it will report the problem
            drop.update(folder / (seg + ".hea") for seg in header.segments if "/" not in seg)
    return [p for p in paths if p not in drop] if drop else paths
