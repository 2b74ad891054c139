"""A corpus of broken (and a few good) ECG records, written from scratch into a folder.

Every case is built by code here, never a committed binary: truncated and empty files,
headers that lie, impossible sampling rates, unreadable or oddly named files, paths that
escape the folder, damaged or hostile hospital exports (DICOM, aECG, MUSE, Philips XML, written
by tests/ecg_writers.py). Each case says what a user should get back, `ok` or `error` (or
`skipped`: not a record at all, so a folder scan ignores it), and why. CSV and NPY cases
assume the run passes FS_ARGS (`--fs 250 --leads I,II`), as headerless files need.

    cases = build_corpus(tmp_path / "in", real_dir)   # broken + good, side by side
    [c for c in cases if c.expect == "ok"]            # the good ones, never to be lost
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ecg_writers import (
    CT_IMAGE,
    billion_laughs,
    write_aecg,
    write_dicom,
    write_muse,
    write_philips,
)

OK, ERROR, SKIPPED = "ok", "error", "skipped"
FS_ARGS = ("--fs", "250", "--leads", "I,II")  # what headerless CSV/NPY records need
WFDB_NAN = -32768  # format 16's "no sample" value
GAIN = 200.0  # ADC units per mV in every header written here


@dataclass(frozen=True)
class Case:
    """One input: the path a user (or discover) names, the files it spans, and the outcome."""

    name: str
    record: Path  # the .hea of a WFDB record, else the file itself
    files: tuple[Path, ...]
    expect: str  # OK, ERROR or SKIPPED
    why: str  # what a user should see, in words (goes into docs/RELIABILITY.md)


def ecg_like(fs: float, seconds: float, n_leads: int = 2, bpm: float = 72.0,
             seed: int = 0) -> np.ndarray:
    """(n_leads, n) float mV: P-QRS-T beats at `bpm` with a little noise, so beats are findable.

    One beat template is added at each R-peak, so an hour costs what a few seconds do.
    """
    rng = np.random.default_rng(seed)
    n = round(fs * seconds)
    tt = np.arange(-0.3, 0.4, 1 / fs)
    beat = sum(amp * np.exp(-((tt - dt) ** 2) / (2 * width**2))
               for dt, amp, width in ((-0.18, 0.12, 0.025), (0.0, 1.0, 0.012), (0.25, 0.3, 0.04)))
    x = np.zeros(n + len(tt))
    for r in np.arange(0.4, seconds, 60.0 / bpm):
        i = round(r * fs)
        x[i : i + len(tt)] += beat
    x = x[round(0.3 * fs) : round(0.3 * fs) + n]  # the template's R is 0.3 s in
    sign = np.where(np.arange(n_leads) % 3 == 2, -1.0, 1.0)
    scales = (np.linspace(1.0, 0.4, n_leads) * sign)[:, None]
    return scales * x[None, :] + rng.normal(0, 0.01, (n_leads, n))


def _adc(signal_mv: np.ndarray) -> np.ndarray:
    """mV -> format 16 samples, NaN -> the WFDB missing value; frames interleaved (n, leads)."""
    x = np.where(np.isfinite(signal_mv), np.round(signal_mv * GAIN), WFDB_NAN)
    return np.clip(x, -32767, 32767).astype("<i2").T.copy()


def _header(name: str, fs: object, n: object, leads: list[str], dat: str | None = None,
            fmt: object = 16) -> str:
    """WFDB header text: a record line, then one line per signal (gain GAIN, 16-bit resolution)."""
    dat = dat or f"{name}.dat"
    lines = [f"{name} {len(leads)} {fs} {n}"]
    lines += [f"{dat} {fmt} {GAIN:g}/mV 16 0 0 0 0 {lead}" for lead in leads]
    return "\n".join(lines) + "\n"


def _wfdb(folder: Path, name: str, signal_mv: np.ndarray, fs: object, leads: list[str],
          *, header_n: object = None, dat_bytes: bytes | None = None, fmt: object = 16,
          dat: str | None = None) -> tuple[Path, Path]:
    """A header + .dat pair written by hand, so every field can lie on purpose."""
    hea, dat_path = folder / f"{name}.hea", folder / f"{name}.dat"
    n = signal_mv.shape[1] if header_n is None else header_n
    hea.write_text(_header(name, fs, n, leads, dat=dat, fmt=fmt))
    dat_path.write_bytes(_adc(signal_mv).tobytes() if dat_bytes is None else dat_bytes)
    return hea, dat_path


def _case(name: str, files: tuple[Path, ...], expect: str, why: str) -> Case:
    return Case(name, files[0], files, expect, why)


# ---- broken inputs -------------------------------------------------------------------------

def truncated_dat(folder: Path) -> Case:
    sig = ecg_like(250, 10)
    raw = _adc(sig).tobytes()
    files = _wfdb(folder, "truncated_dat", sig, 250, ["I", "II"], dat_bytes=raw[: len(raw) // 3])
    return _case("truncated_dat", files, ERROR,
                 "signal file holds a third of the samples the header declares")


def header_without_dat(folder: Path) -> Case:
    hea = folder / "header_without_dat.hea"
    hea.write_text(_header("header_without_dat", 250, 2500, ["I", "II"]))
    return _case("header_without_dat", (hea,), ERROR, "the .dat the header names does not exist")


def header_not_a_header(folder: Path) -> Case:
    hea = folder / "header_not_a_header.hea"
    hea.write_text("Patient: Doe, John\nThis export was cancelled by the user.\n<html></html>\n")
    return _case("header_not_a_header", (hea,), ERROR,
                 "the .hea holds free text, not a WFDB record line")


def header_binary_garbage(folder: Path) -> Case:
    hea = folder / "header_binary_garbage.hea"
    hea.write_bytes(bytes(np.random.default_rng(1).integers(0, 256, 512, dtype=np.uint8)))
    return _case("header_binary_garbage", (hea,), ERROR, "the .hea is random bytes (not even text)")


def empty_header(folder: Path) -> Case:
    hea = folder / "empty_header.hea"
    hea.write_bytes(b"")
    return _case("empty_header", (hea,), ERROR, "the .hea is 0 bytes")


def empty_dat(folder: Path) -> Case:
    files = _wfdb(folder, "empty_dat", ecg_like(250, 10), 250, ["I", "II"], dat_bytes=b"")
    return _case("empty_dat", files, ERROR, "the header declares 10 s but the .dat is 0 bytes")


def empty_edf(folder: Path) -> Case:
    edf = folder / "empty_edf.edf"
    edf.write_bytes(b"")
    return _case("empty_edf", (edf,), ERROR, "an .edf of 0 bytes")


def truncated_edf(folder: Path) -> Case:
    good = good_edf(folder, name="truncated_edf_src").record
    edf = folder / "truncated_edf.edf"
    data = good.read_bytes()
    edf.write_bytes(data[: len(data) // 2])
    good.unlink()
    return _case("truncated_edf", (edf,), ERROR, "an .edf cut in the middle of its data records")


def zero_samples(folder: Path) -> Case:
    files = _wfdb(folder, "zero_samples", np.zeros((2, 0)), 250, ["I", "II"])
    return _case("zero_samples", files, ERROR,
                 "a valid header declaring 0 samples, with an empty .dat")


def one_sample(folder: Path) -> Case:
    files = _wfdb(folder, "one_sample", ecg_like(250, 10)[:, :1], 250, ["I", "II"])
    return _case("one_sample", files, ERROR, "a 1-sample record (4 ms): nothing to analyse")


def _bad_fs(label: str, fs: object, why: str) -> Callable[[Path], Case]:
    def make(folder: Path) -> Case:
        name = f"fs_{label}"
        files = _wfdb(folder, name, ecg_like(250, 10), fs, ["I", "II"])
        return _case(name, files, ERROR, why)

    make.__name__ = f"fs_{label}"
    return make


fs_negative = _bad_fs("negative", -250, "sampling rate -250 Hz")
fs_zero = _bad_fs("zero", 0, "sampling rate 0 Hz")
fs_absurd = _bad_fs("absurd", 1e9, "sampling rate 1e9 Hz: 2500 samples would last 2.5 us")
fs_not_a_number = _bad_fs("not_a_number", "fast", "sampling rate field is the word 'fast'")


def wrong_byte_count(folder: Path) -> Case:
    sig = ecg_like(250, 10, n_leads=2)  # written as 2 leads, declared as 3
    files = _wfdb(folder, "wrong_byte_count", sig, 250, ["I", "II", "V1"],
                  dat_bytes=_adc(sig).tobytes())
    return _case("wrong_byte_count", files, ERROR,
                 "header declares 3 leads x 2500 samples; the .dat holds 2 x 2500")


def odd_byte_count(folder: Path) -> Case:
    sig = ecg_like(250, 10, n_leads=2)
    files = _wfdb(folder, "odd_byte_count", sig, 250, ["I", "II"], header_n="",
                  dat_bytes=_adc(sig).tobytes()[:-1])
    return _case("odd_byte_count", files, ERROR,
                 "no sample count in the header and a .dat that is not a whole number of frames")


def huge_sample_count(folder: Path) -> Case:
    sig = ecg_like(250, 10)
    files = _wfdb(folder, "huge_sample_count", sig, 250, ["I", "II"], header_n=10**12)
    return _case("huge_sample_count", files, ERROR,
                 "header declares 1e12 samples (3.6 TiB) for a 10 kB .dat: refused, not allocated")


def nan_only(folder: Path) -> Case:
    files = _wfdb(folder, "nan_only", np.full((2, 2500), np.nan), 250, ["I", "II"])
    return _case("nan_only", files, ERROR,
                 "every sample is the WFDB missing value: no signal at all")


def flat(folder: Path) -> Case:
    files = _wfdb(folder, "flat", np.zeros((2, 2500)), 250, ["I", "II"])
    return _case("flat", files, ERROR,
                 "every lead is a flat line (electrodes off): nothing to predict on")


def unknown_extension(folder: Path) -> Case:
    f = folder / "unknown_extension.xyz"
    f.write_bytes(_adc(ecg_like(250, 10)).tobytes())
    return _case("unknown_extension", (f,), SKIPPED,
                 "not a record format: a folder scan ignores it")


def unknown_wfdb_format(folder: Path) -> Case:
    files = _wfdb(folder, "unknown_wfdb_format", ecg_like(250, 10), 250, ["I", "II"], fmt=999)
    return _case("unknown_wfdb_format", files, ERROR, "WFDB signal format 999 does not exist")


def unreadable(folder: Path) -> Case:
    files = _wfdb(folder, "unreadable", ecg_like(250, 10), 250, ["I", "II"])
    for f in files:
        f.chmod(0)
    why = "both files mode 000 (as root every file is readable: then it is a good record)"
    return _case("unreadable", files, OK if os.geteuid() == 0 else ERROR, why)


def escapes_to_etc_passwd(folder: Path) -> Case:
    hea = folder / "escapes_to_etc_passwd.hea"
    hea.write_text(_header("escapes_to_etc_passwd", 250, 100, ["I"], dat="../../etc/passwd"))
    return _case("escapes_to_etc_passwd", (hea,), ERROR,
                 "header's signal file is ../../etc/passwd: outside the record's folder")


def escapes_to_absolute(folder: Path) -> Case:
    hea = folder / "escapes_to_absolute.hea"
    hea.write_text(_header("escapes_to_absolute", 250, 100, ["I"], dat="/etc/passwd"))
    return _case("escapes_to_absolute", (hea,), ERROR,
                 "header's signal file is the absolute /etc/passwd")


def escapes_to_real_signal(folder: Path) -> Case:
    """The escaping file exists and is a valid signal: only a path check can refuse it."""
    outside = folder.parent / f"{folder.name}-outside"
    outside.mkdir(exist_ok=True)
    sig = ecg_like(250, 10)
    (outside / "sig.dat").write_bytes(_adc(sig).tobytes())
    hea = folder / "escapes_to_real_signal.hea"
    hea.write_text(_header("escapes_to_real_signal", 250, 2500, ["I", "II"],
                           dat=f"../{outside.name}/sig.dat"))
    return _case("escapes_to_real_signal", (hea, outside / "sig.dat"), ERROR,
                 "header's signal file is a valid .dat in a sibling folder (../x/sig.dat)")


def _csv_text(sig: np.ndarray) -> str:
    rows = "\n".join(",".join(f"{v:.4f}" for v in frame) for frame in sig.T)
    return "I,II\n" + rows + "\n"


def csv_record(path: Path, bpm: float = 75) -> Path:
    """A good 2-lead 250 Hz CSV (I,II header row) at `bpm`: read with FS_ARGS."""
    t = np.arange(2500) / 250
    beat = np.exp(-((t[:, None] - np.arange(0.2, 10, 60 / bpm)) / 0.01) ** 2).sum(1)
    beat += 0.1 * np.sin(2 * np.pi * 0.3 * t)  # not flat between beats
    beat += np.random.default_rng(int(bpm)).normal(0, 0.02, t.size)
    np.savetxt(path, np.stack([beat, 0.8 * beat], 1), delimiter=",", header="I,II",
               comments="", fmt="%.4f")
    return path


def empty_csv(folder: Path) -> Case:
    f = folder / "empty_csv.csv"
    f.write_text("")
    return _case("empty_csv", (f,), ERROR, "a .csv of 0 bytes")


def csv_not_numbers(folder: Path) -> Case:
    f = folder / "csv_not_numbers.csv"
    f.write_text(_csv_text(ecg_like(250, 10)).replace("0.0", "abc", 50))
    return _case("csv_not_numbers", (f,), ERROR, "a .csv whose samples are partly words")


def csv_ragged(folder: Path) -> Case:
    f = folder / "csv_ragged.csv"
    lines = _csv_text(ecg_like(250, 10)).splitlines()
    lines[500] += ",1.0,2.0"
    f.write_text("\n".join(lines) + "\n")
    return _case("csv_ragged", (f,), ERROR, "a .csv with one row of 4 values among rows of 2")


def npy_3d(folder: Path) -> Case:
    f = folder / "npy_3d.npy"
    np.save(f, np.zeros((2, 2, 2500), np.float32))
    return _case("npy_3d", (f,), ERROR, "a 3-D .npy array (leads x samples expected)")


def npy_truncated(folder: Path) -> Case:
    f = folder / "npy_truncated.npy"
    np.save(f, ecg_like(250, 10).astype(np.float32))
    f.write_bytes(f.read_bytes()[:5000])
    return _case("npy_truncated", (f,), ERROR, "a .npy cut short of the size its header declares")


class _OpensAFile:
    """Unpickling this opens (creates) `marker`: the proof that a reader executed a pickle."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.marker, "w"))


def pickle_marker(folder: Path) -> Path:
    """The file that exists only if some reader unpickled npy_with_pickle's payload."""
    return folder.parent / f"{folder.name}-pickle-ran"


def npy_with_pickle(folder: Path) -> Case:
    """An object-dtype .npy: loading it with allow_pickle would run code (creates the marker)."""
    f = folder / "npy_with_pickle.npy"
    marker = pickle_marker(folder)
    np.save(f, np.array([_OpensAFile(str(marker))], dtype=object), allow_pickle=True)
    return _case("npy_with_pickle", (f,), ERROR,
                 f"an object .npy (a pickle): refused unread; {marker.name} must never appear")


# ---- hospital exports (writers in tests/ecg_writers.py) -------------------------------------

TWELVE = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]


def _export(name: str, write: Callable[..., Path], expect: str, why: str, suffix: str = ".xml",
            **options: object) -> Callable[[Path], Case]:
    """A case that writes a 12-lead 500 Hz 10 s signal with `write(path, ..., **options)`."""
    def make(folder: Path) -> Case:
        path = write(folder / f"{name}{suffix}", ecg_like(500, 10, n_leads=12, seed=11), 500.0,
                     TWELVE, **options)
        return _case(name, (path,), expect, why)

    make.__name__ = name
    return make


dicom_without_waveform = _export(
    "dicom_without_waveform", write_dicom, ERROR, "a 12-lead ECG DICOM (no extension) whose "
    "waveform sequence is missing", suffix="", waveform=False)
dicom_encrypted = _export("dicom_encrypted", write_dicom, ERROR, "a 12-lead ECG DICOM carrying "
                          "encrypted attributes", suffix=".dcm", encrypted=True)
dicom_image_not_ecg = _export(
    "dicom_image_not_ecg", write_dicom, SKIPPED, "a DICOM CT image (no extension): not an ECG, "
    "a folder scan ignores it", suffix="", sop_class=CT_IMAGE)
aecg_wrong_units = _export("aecg_wrong_units", write_aecg, ERROR,
                           "an aECG whose leads are in mmHg", unit="mmHg")
muse_truncated_base64 = _export("muse_truncated_base64", write_muse, ERROR,
                                "a MUSE XML whose base64 is cut 3 characters short", cut_base64=3)
muse_missing_leads = _export("muse_missing_leads", write_muse, ERROR,
                             "a MUSE XML declaring 8 leads (8-lead storage) with 6 LeadData",
                             eight_lead=True, drop_leads=2)
philips_missing_leads = _export("philips_missing_leads", write_philips, ERROR,
                                "a Philips XML naming 12 leads with data for 8", data_leads=8)
philips_unknown_version = _export("philips_unknown_version", write_philips, ERROR,
                                  "a Philips XML of document version 9.9", version="9.9")


def aecg_billion_laughs(folder: Path) -> Case:
    f = billion_laughs(folder / "aecg_billion_laughs.xml")
    return _case("aecg_billion_laughs", (f,), ERROR,
                 "an aECG whose DTD would expand 'lol' 1e9 times (3 GB)")


def xml_not_an_ecg(folder: Path) -> Case:
    f = folder / "xml_not_an_ecg.xml"
    f.write_text('<?xml version="1.0"?><settings><printer>ward 3</printer></settings>')
    return _case("xml_not_an_ecg", (f,), SKIPPED,
                 "an XML settings file: not an ECG, a folder scan ignores it")


# ---- inputs that look odd but are good ------------------------------------------------------

def duplicate_leads(folder: Path) -> Case:
    files = _wfdb(folder, "duplicate_leads", ecg_like(250, 10, n_leads=3, seed=3), 250,
                  ["II", "II", "V1"])
    return _case("duplicate_leads", files, OK, "lead II written twice: use the first, warn, go on")


def non_utf8_name(folder: Path) -> Case:
    """A Latin-1 export: `müller` in both file names and inside the header (bytes 0xfc).

    WFDB headers are ASCII by specification and wfdb drops the byte (then looks for
    `mller.dat`), so the record is an error; what matters is that its error row names it.
    """
    name = b"m\xfcller"
    root = os.fsencode(folder)
    sig = ecg_like(250, 10, seed=4)
    hea, dat = os.path.join(root, name + b".hea"), os.path.join(root, name + b".dat")
    with open(hea, "wb") as f:
        f.write(_header("NAME", 250, sig.shape[1], ["I", "II"], dat="NAME.dat").replace(
            "NAME", "\0").encode().replace(b"\0", name))
    with open(dat, "wb") as f:
        f.write(_adc(sig).tobytes())
    files = (Path(os.fsdecode(hea)), Path(os.fsdecode(dat)))
    return _case("non_utf8_name", files, ERROR,
                 "file names and header in Latin-1 (b'm\\xfcller'): out of the WFDB spec (ASCII)")


def holter_24h(folder: Path, hours: float = 24.0) -> Case:
    """A 24-hour 1-lead 250 Hz format-16 Holter (43 MB), written an hour at a time."""
    fs, name = 250, "holter_24h"
    hour = _adc(ecg_like(fs, 3600, n_leads=1, bpm=66, seed=5)).tobytes()
    n = round(hours * 3600 * fs)
    (folder / f"{name}.hea").write_text(_header(name, fs, n, ["MLII"]))
    with open(folder / f"{name}.dat", "wb") as f:
        whole, rest = divmod(n * 2, len(hour))
        f.writelines([hour] * whole + [hour[:rest]])
    files = (folder / f"{name}.hea", folder / f"{name}.dat")
    return _case(name, files, OK, f"{hours:g} h of one lead at 250 Hz: processed window by window")


# ---- good records ----------------------------------------------------------------------------

def good_wfdb_12lead(folder: Path) -> Case:
    import wfdb

    leads = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
    wfdb.wrsamp("good_12lead", fs=500, units=["mV"] * 12, sig_name=leads,
                p_signal=ecg_like(500, 10, n_leads=12, seed=6).T, fmt=["16"] * 12,
                adc_gain=[GAIN] * 12, baseline=[0] * 12, write_dir=str(folder))
    files = (folder / "good_12lead.hea", folder / "good_12lead.dat")
    return _case("good_12lead", files, OK, "12-lead 500 Hz 10 s written by wfdb.wrsamp")


def good_wfdb_holter_style(folder: Path) -> Case:
    import wfdb

    wfdb.wrsamp("good_mlii_v1", fs=360, units=["mV"] * 2, sig_name=["MLII", "V1"],
                p_signal=ecg_like(360, 30, seed=7).T, fmt=["212"] * 2, adc_gain=[GAIN] * 2,
                baseline=[0] * 2, write_dir=str(folder))
    files = (folder / "good_mlii_v1.hea", folder / "good_mlii_v1.dat")
    return _case("good_mlii_v1", files, OK, "2-lead MLII/V1 360 Hz 30 s, format 212")


def good_edf(folder: Path, name: str = "good_edf") -> Case:
    import pyedflib

    sig = ecg_like(256, 10, n_leads=2, seed=8)
    path = folder / f"{name}.edf"
    headers = [{"label": lead, "dimension": "mV", "sample_frequency": 256, "physical_max": 5.0,
                "physical_min": -5.0, "digital_max": 32767, "digital_min": -32768}
               for lead in ("I", "II")]
    with pyedflib.EdfWriter(str(path), 2, file_type=pyedflib.FILETYPE_EDFPLUS) as w:
        w.setSignalHeaders(headers)
        w.writeSamples(list(sig))
    return _case(name, (path,), OK, "2-lead EDF+ 256 Hz 10 s written by pyedflib")


def good_csv(folder: Path) -> Case:
    f = folder / "good_csv.csv"
    f.write_text(_csv_text(ecg_like(250, 10, seed=9)))
    return _case("good_csv", (f,), OK, "2-lead CSV with an 'I,II' header row (run with --fs 250)")


def good_npy(folder: Path) -> Case:
    f = folder / "good_npy.npy"
    np.save(f, ecg_like(250, 10, seed=10).astype(np.float32))
    return _case("good_npy", (f,), OK, "(2, 2500) float32 .npy (run with --fs 250 --leads I,II)")


good_dicom = _export("good_dicom_uid", write_dicom, OK, "12-lead 500 Hz DICOM ECG named by its "
                     "UID (1.2.826...320, no real extension)", suffix=".1.2.826.0.1.320")
good_aecg = _export("good_aecg", write_aecg, OK, "12-lead 500 Hz HL7 aECG, 1 µV digits")
good_muse_8lead = _export("good_muse_8lead", write_muse, OK, "GE MUSE 8-lead storage (III, aVR, "
                          "aVL, aVF derived), 4.88 µV per bit", eight_lead=True)
good_philips_xli = _export("good_philips_xli", write_philips, OK, "Philips XML 1.04, "
                           "XLI-compressed, 5 µV per bit", xli=True)

REAL_RECORDS = ("ptbxl/00001_lr", "cinc2021/E07500")  # linked, never copied


def real_links(folder: Path, real_dir: Path) -> list[Case]:
    """Symlinks to a few real records of shared/ecg-real (their .hea and signal file), each in
    a folder of its own: a record linked in whole reads, while a header of INPUT whose signal
    file links out of its folder is refused (issue 24, R7)."""
    cases = []
    for rec in REAL_RECORDS:
        src = real_dir / rec
        home = folder / f"real_{src.name}"
        home.mkdir()
        links = []
        for f in sorted(src.parent.glob(src.name + ".*")):
            link = home / f.name
            link.symlink_to(f)
            links.append(link)
        hea = home / f"{src.name}.hea"
        links.sort(key=lambda p: p.suffix != ".hea")
        cases.append(Case(f"real_{src.name}", hea, tuple(links), OK,
                          f"real record {rec} (symlinked)"))
    return cases


BROKEN: tuple[Callable[[Path], Case], ...] = (
    truncated_dat, header_without_dat, header_not_a_header, header_binary_garbage, empty_header,
    empty_dat, empty_edf, truncated_edf, zero_samples, one_sample, fs_negative, fs_zero,
    fs_absurd, fs_not_a_number, wrong_byte_count, odd_byte_count, huge_sample_count, nan_only,
    flat, unknown_extension, unknown_wfdb_format, unreadable, escapes_to_etc_passwd,
    escapes_to_absolute, escapes_to_real_signal, non_utf8_name, npy_with_pickle, empty_csv,
    csv_not_numbers, csv_ragged, npy_3d, npy_truncated, dicom_without_waveform, dicom_encrypted,
    dicom_image_not_ecg, aecg_billion_laughs, aecg_wrong_units, muse_truncated_base64,
    muse_missing_leads, philips_missing_leads, philips_unknown_version, xml_not_an_ecg,
)
ODD_BUT_GOOD: tuple[Callable[[Path], Case], ...] = (duplicate_leads,)
GOOD: tuple[Callable[[Path], Case], ...] = (good_wfdb_12lead, good_wfdb_holter_style, good_edf,
                                            good_csv, good_npy, good_dicom, good_aecg,
                                            good_muse_8lead, good_philips_xli)


def build_corpus(folder: Path, real_dir: Path | None = None, holter_hours: float | None = None
                 ) -> list[Case]:
    """Every case of BROKEN, ODD_BUT_GOOD and GOOD (plus real links, plus a Holter if asked)."""
    folder.mkdir(parents=True, exist_ok=True)
    cases = [make(folder) for make in (*BROKEN, *ODD_BUT_GOOD, *GOOD)]
    if real_dir is not None:
        cases += real_links(folder, real_dir)
    if holter_hours:
        cases.append(holter_24h(folder, holter_hours))
    return cases
