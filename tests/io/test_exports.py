"""Hospital exports: DICOM ECG (pydicom's own real file and files we write), HL7 aECG, GE MUSE
and Philips XML (plain and XLI) read into the same Record; round trips keep units, lead order
and rate; damaged files are one-line errors; discovery finds them by content."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from ecg_writers import (
    CT_IMAGE,
    billion_laughs,
    lzw_encode,
    philips_residuals,
    quantized,
    write_aecg,
    write_dicom,
    write_muse,
    write_philips,
    xli_encode,
)

from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.io.labels.cinc import header_values
from ecgmoe_cli.io.records.discover import discover_records
from ecgmoe_cli.io.records.read import read_record
from ecgmoe_cli.io.records.xli import lzw_decode, rebuild_limb_leads, xli_decode
from ecgmoe_cli.signal.leads import CANONICAL_LEADS, canonicalize

REAL = "cinc2021/E07505"  # 12 leads, 500 Hz, 10 s


def pydicom_ecg() -> Path:
    """The real 12-lead ECG that pydicom ships (Mortara ELI 250, 1000 Hz, 10 s)."""
    import pydicom

    return Path(pydicom.__file__).parent / "data" / "test_files" / "waveform_ecg.dcm"


@pytest.fixture(scope="module")
def real(real_dir: Path) -> tuple[np.ndarray, float, list[str]]:
    import wfdb

    rec = wfdb.rdrecord(str(real_dir / REAL))
    return rec.p_signal.T, float(rec.fs), list(rec.sig_name)


def test_pydicom_waveform_ecg_is_read_as_the_file_states() -> None:
    import pydicom

    path = pydicom_ecg()
    ds = pydicom.dcmread(path)
    rec = read_record(path)
    rhythm = ds.WaveformSequence[0]
    assert rec.fs == float(rhythm.SamplingFrequency) == 1000.0
    assert rec.lead_names == [str(c.ChannelSourceSequence[0].CodeMeaning)
                              for c in rhythm.ChannelDefinitionSequence]
    assert rec.lead_names[:2] == ["Lead I (Einthoven)", "Lead II"]
    assert canonicalize(rec.lead_names).source_index == list(range(12))  # in file order
    assert rec.signal.shape == (12, 10000)
    # µV in the file (1.25 µV per bit), mV in the Record
    np.testing.assert_allclose(rec.signal, ds.waveform_array(0).T / 1000, atol=1e-6)
    assert rec.meta["median_beats"].shape == (12, 1200)  # type: ignore[union-attr]
    assert rec.meta["age"] == 42.0 and rec.meta["sex"] == "Female"
    assert rec.meta["acquired"] == "2013-01-25T10:59:19"
    assert rec.meta["device"] == "Mortara Instrument, Inc. el250"
    assert header_values(rec.comments) == {"y_age": 42.0, "y_sex__female": 1.0}  # --labels cinc


Writer = Callable[..., Path]
FORMATS: dict[str, tuple[Writer, dict, str, float]] = {  # writer, options, suffix, µV per bit
    "dicom": (write_dicom, {}, "", 1.25),
    "aecg": (write_aecg, {}, ".xml", 1.0),
    "muse12": (write_muse, {}, ".xml", 4.88),
    "philips": (write_philips, {}, ".xml", 5.0),
    "philips_xli": (write_philips, {"xli": True}, ".xml", 5.0),
}


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_keeps_units_lead_order_and_rate(fmt: str, real: tuple, tmp_path: Path
                                                    ) -> None:
    sig, fs, names = real
    write, options, suffix, uv_per_bit = FORMATS[fmt]
    rec = read_record(write(tmp_path / f"rec{suffix}", sig, fs, names, **options))
    assert rec.fs == fs and rec.signal.shape == sig.shape
    assert canonicalize(rec.lead_names).used == names == list(CANONICAL_LEADS)
    assert canonicalize(rec.lead_names).source_index == list(range(12))
    np.testing.assert_allclose(rec.signal, quantized(sig, uv_per_bit), atol=1e-5)
    np.testing.assert_allclose(rec.signal, sig, atol=uv_per_bit / 2000 + 1e-6)  # mV, not µV
    assert rec.meta["format"] == fmt.split("_")[0].removesuffix("12")
    assert {"age", "sex", "acquired", "device"} <= set(rec.meta)


def test_muse_eight_lead_storage_derives_the_limb_leads(real: tuple, tmp_path: Path) -> None:
    sig, fs, names = real
    rec = read_record(write_muse(tmp_path / "m.xml", sig, fs, names, eight_lead=True,
                                 median_s=1.2))
    assert rec.lead_names == list(CANONICAL_LEADS)
    assert rec.meta["derived_leads"] == ["III", "aVR", "aVL", "aVF"]
    # the median beat comes along, in the same 12 leads (its limb leads derived too)
    np.testing.assert_allclose(rec.meta["median_beats"], rec.signal[:, :600], atol=1e-5)
    assert rec.meta["median_fs"] == fs
    i, ii = quantized(sig[:2], 4.88)
    for row, want in zip(rec.signal[2:6], (ii - i, -(i + ii) / 2, i - ii / 2, ii - i / 2)):
        np.testing.assert_allclose(row, want, atol=1e-5)
    np.testing.assert_allclose(rec.signal[6:], quantized(sig[6:], 4.88), atol=1e-5)


@pytest.mark.parametrize("data", [b"", b"a" * 5000, bytes(range(256)) * 3,
                                  np.random.default_rng(0).bytes(20000)])
def test_lzw_round_trip(data: bytes) -> None:
    """Repeats (the KwKwK code), every byte value, and a table that fills up (random bytes)."""
    assert lzw_decode(lzw_encode(data)) == data


def test_xli_round_trip_is_exact_and_rebuilds_the_limb_leads(real: tuple) -> None:
    sig, _, names = real
    digital = np.round(sig * 200).astype(np.int64)
    stored = philips_residuals(digital, names)
    assert np.abs(stored[2:6]).max() <= 2  # consistent limb leads leave near-zero residuals
    stream = xli_encode(stored)
    decoded = np.stack(xli_decode(stream))
    np.testing.assert_array_equal(decoded, stored)
    np.testing.assert_array_equal(rebuild_limb_leads(decoded), digital)
    with pytest.raises(ValueError, match="overruns the stream"):
        xli_decode(stream[:-10])


def test_xli_files_decode_alike_in_sierra_ecg_tools(real: tuple, tmp_path: Path) -> None:
    """sierra-ecg-tools (Philips XML's open reader, XLI and lead rebuild its own code) gets
    exactly the samples we wrote, and so do we: the writer is not only our reader's mirror."""
    from sierraecg import read_file

    sig, fs, names = real
    path = write_philips(tmp_path / "x.xml", sig, fs, names, xli=True)
    theirs = np.stack([np.asarray(lead.samples, np.int64) for lead in read_file(str(path)).leads])
    np.testing.assert_allclose(theirs * 0.005, quantized(sig, 5.0), atol=1e-9)  # 5 µV per bit
    np.testing.assert_allclose(read_record(path).signal, theirs * 0.005, atol=1e-6)


def _external_entity(path: Path) -> Path:
    path.write_text('<?xml version="1.0"?><!DOCTYPE RestingECG [<!ENTITY x SYSTEM '
                    '"file:///etc/passwd">]><RestingECG>&x;</RestingECG>')
    return path


def _broken(name: str, sig: np.ndarray, fs: float, names: list[str], tmp: Path) -> Path:
    """One damaged export per name."""
    p = tmp / f"{name}.xml"
    makers: dict[str, Callable[[], Path]] = {
        "muse_truncated_base64": lambda: write_muse(p, sig, fs, names, cut_base64=3),
        "muse_base64_cut_on_a_boundary": lambda: write_muse(p, sig, fs, names, cut_base64=400),
        "muse_wrong_units": lambda: write_muse(p, sig, fs, names, units="FURLONGS"),
        "muse_missing_leads": lambda: write_muse(p, sig, fs, names, drop_leads=2),
        "aecg_billion_laughs": lambda: billion_laughs(p),
        "muse_external_entity": lambda: _external_entity(p),
        "aecg_wrong_units": lambda: write_aecg(p, sig, fs, names, unit="mmHg"),
        "philips_missing_leads": lambda: write_philips(p, sig, fs, names, data_leads=8),
        "philips_xli_missing_leads": lambda: write_philips(p, sig, fs, names, xli=True,
                                                           data_leads=8),
        "philips_unknown_version": lambda: write_philips(p, sig, fs, names, version="2.0"),
        "dicom_without_waveform": lambda: write_dicom(tmp / name, sig, fs, names,
                                                      waveform=False),
        "dicom_encrypted": lambda: write_dicom(tmp / name, sig, fs, names, encrypted=True),
        "dicom_wrong_units": lambda: write_dicom(tmp / name, sig, fs, names, units="mm[Hg]"),
        "xml_not_an_ecg": lambda: (p.write_text("<config><a>1</a></config>"), p)[1],
        "xml_cut_short": lambda: (p.write_bytes(write_muse(p, sig, fs, names).read_bytes()[:900]),
                                  p)[1],
    }
    return makers[name]()


BROKEN = {
    "muse_truncated_base64": "lead I WaveFormData is not valid base64",
    "muse_base64_cut_on_a_boundary": "lead I holds 4851 samples, LeadSampleCountTotal says 5000",
    "muse_wrong_units": "amplitude units 'FURLONGS' are not a voltage",
    "muse_missing_leads": "Rhythm waveform declares 12 leads and holds 10",
    "aecg_billion_laughs": "XML declares entities: refused",
    "muse_external_entity": "XML declares entities: refused",
    "aecg_wrong_units": "lead MDC_ECG_LEAD_I is in 'mmHg', not a voltage",
    "philips_missing_leads": "holds 8.0 leads of 5000 samples; leadlabels names 12",
    "philips_xli_missing_leads": "XLI stream holds 8 leads",
    "philips_unknown_version": "Philips XML version '2.0' is not one this reader knows",
    "dicom_without_waveform": "DICOM has no waveform sequence",
    "dicom_encrypted": "encrypted",
    "dicom_wrong_units": "channel 1 is in 'mm\\[Hg\\]', not a voltage",
    "xml_not_an_ecg": "XML root <config> is not an ECG export",
    "xml_cut_short": "not well-formed XML",
}


@pytest.mark.parametrize("name", BROKEN)
def test_damaged_exports_are_one_line_errors(name: str, real: tuple, tmp_path: Path) -> None:
    path = _broken(name, *real, tmp_path)
    with pytest.raises(EcgMoeError, match=BROKEN[name]) as e:
        read_record(path)
    assert str(e.value).startswith(str(path)) and "\n" not in str(e.value)


def test_discovery_by_content(real: tuple, tmp_path: Path) -> None:
    sig, fs, names = real
    uid_named = tmp_path / "1.2.826.0.1.3680043.8.498.320"  # a DICOM named by its UID
    write_dicom(uid_named, sig, fs, names)
    write_dicom(tmp_path / "IM0001", sig, fs, names)  # no extension at all
    write_dicom(tmp_path / "ct_slice", sig, fs, names, sop_class=CT_IMAGE)  # not an ECG
    write_aecg(tmp_path / "a.xml", sig, fs, names)
    write_muse(tmp_path / "m.XML", sig, fs, names)
    write_philips(tmp_path / "p.xml", sig, fs, names)
    billion_laughs(tmp_path / "laughs.xml")  # cannot be parsed to its root: listed, then refused
    (tmp_path / "settings.xml").write_text("<settings/>")
    (tmp_path / "README").write_text("exports of ward 3")
    found = [p.name for p in discover_records(tmp_path)]
    assert found == ["1.2.826.0.1.3680043.8.498.320", "IM0001", "a.xml", "laughs.xml", "m.XML",
                     "p.xml"]
    assert read_record(uid_named).name == uid_named.name  # the whole UID, not its stem


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_export_is_listed_and_one_error(real: tuple, tmp_path: Path) -> None:
    p = write_muse(tmp_path / "m.xml", *real)
    p.chmod(0)
    assert discover_records(tmp_path) == [p]
    with pytest.raises(EcgMoeError, match="ermission"):
        read_record(p)


def test_predict_gives_the_same_report_for_one_signal_in_every_format(
        real: tuple, real_dir: Path, tiny_weights: Path, tmp_path: Path) -> None:
    """A mixed folder (WFDB + every export of the same real record): every row ok, and every
    export's outputs equal the WFDB record's up to each format's quantization."""
    import pandas as pd
    from run_cli import ecgmoe

    sig, fs, names = real
    folder = tmp_path / "mixed"
    folder.mkdir()
    for f in (real_dir / REAL).parent.glob(Path(REAL).name + ".*"):
        (folder / f.name).symlink_to(f)
    for fmt, (write, options, suffix, _) in FORMATS.items():
        write(folder / f"{fmt}{suffix}", sig, fs, names, **options)
    write_muse(folder / "muse8.xml", sig, fs, names, eight_lead=True)
    import wfdb  # the Philips samples (5 µV steps) as WFDB: gain 200/mV holds them exactly

    wfdb.wrsamp("philips_as_wfdb", fs=fs, units=["mV"] * 12, sig_name=names,
                p_signal=quantized(sig, 5.0).T, fmt=["16"] * 12, adc_gain=[200.0] * 12,
                baseline=[0] * 12, write_dir=str(folder))
    r = ecgmoe("predict", folder, "-o", tmp_path / "out.parquet", "--weights", tiny_weights,
               "--workers", "0", "--quiet")
    assert r.returncode == 0, r.stderr[-1500:]
    df = pd.read_parquet(tmp_path / "out.parquet").set_index("record")
    assert sorted(df.index) == sorted([Path(REAL).name, *FORMATS, "muse8", "philips_as_wfdb"])
    assert (df["status"] == "ok").all(), df["error"].tolist()
    assert (df["leads_used"] == ",".join(CANONICAL_LEADS)).all()
    assert (df["fs_in"] == fs).all() and (df["duration_s"] == 10.0).all()
    ref = df.loc[Path(REAL).name]
    values = [c for c in df.columns if c.endswith(("_prob", "_bpm")) or c == "quality"]
    assert len(values) >= 5
    for name, row in df.iterrows():
        assert row["n_beats"] == ref["n_beats"], name
        assert [row[c] for c in values] == pytest.approx([ref[c] for c in values], abs=2e-3), name
    # what differences remain are the formats' quantization: the same samples give one report
    numbers = [c for c in df.columns if df[c].dtype.kind == "f"]
    for name in ("philips", "philips_xli"):
        assert df.loc[name, numbers].tolist() == pytest.approx(
            df.loc["philips_as_wfdb", numbers].tolist(), abs=1e-4, nan_ok=True), name  # Holter
        # columns are null (NaN here) with weights that have no beat head
