"""Writers for hospital ECG exports, to build test files from real signals.

Each takes a (leads, n) mV signal, its rate and lead names (canonical: I, II, ..., V6) and
writes the file as the format stores it: DICOM 12-lead ECG waveform (pydicom), HL7 aECG,
GE MUSE (12-lead or 8-lead storage) and Philips XML (plain base64 or XLI). Keyword arguments
let a test damage one field on purpose. `quantized` gives the values a reader must return.
"""

from __future__ import annotations

import base64
import struct
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from ecgmoe_cli.io.records.muse import EIGHT_LEADS
from ecgmoe_cli.io.records.xli import CODE_BITS, LIMB_LEADS, MAX_CODE, RESIDUAL_OFFSET

AECG_NS = "urn:hl7-org:v3"
PHILIPS_NS = "http://www3.medical.philips.com"
TWELVE_LEAD_ECG = "1.2.840.10008.5.1.4.1.1.9.1.1"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
DICOM_CODE = {"I": "5.6.3-9-1", "II": "5.6.3-9-2", "III": "5.6.3-9-61", "aVR": "5.6.3-9-62",
              "aVL": "5.6.3-9-63", "aVF": "5.6.3-9-64", "V1": "5.6.3-9-3", "V2": "5.6.3-9-4",
              "V3": "5.6.3-9-5", "V4": "5.6.3-9-6", "V5": "5.6.3-9-7", "V6": "5.6.3-9-8"}


def quantized(signal_mv: np.ndarray, uv_per_bit: float) -> np.ndarray:
    """What a 16-bit export of `signal_mv` at `uv_per_bit` holds, back in mV."""
    return _digital(signal_mv, uv_per_bit) * (uv_per_bit / 1000)


def _digital(signal_mv: np.ndarray, uv_per_bit: float) -> np.ndarray:
    return np.clip(np.round(signal_mv * 1000 / uv_per_bit), -32768, 32767).astype(np.int64)


def _b64(values: np.ndarray) -> str:
    return base64.b64encode(values.astype("<i2").tobytes()).decode()


def billion_laughs(path: Path, root: str = "AnnotatedECG", levels: int = 9) -> Path:
    """XML whose entities expand 10**levels times ('lol' x 1e9: 3 GB) if a parser let them."""
    lol = "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, levels + 1))
    path.write_text(f'<?xml version="1.0"?><!DOCTYPE {root} [<!ENTITY lol0 "lol">{lol}]>'
                    f'<{root}>&lol{levels};</{root}>')
    return path


# ---- DICOM ---------------------------------------------------------------------------------

def write_dicom(path: Path, signal_mv: np.ndarray, fs: float, names: list[str], *,
                uv_per_bit: float = 1.25, units: str = "uV", waveform: bool = True,
                sop_class: str = TWELVE_LEAD_ECG, encrypted: bool = False) -> Path:
    """A 12-lead ECG Waveform Storage file: one RHYTHM multiplex group, 16-bit signed."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientAge, ds.PatientSex = "ECG", "063Y", "M"
    ds.AcquisitionDateTime, ds.Manufacturer = "20240301081500", "ecgmoe tests"
    if encrypted:
        ds.EncryptedAttributesSequence = [Dataset()]
    if waveform:
        group = Dataset()
        group.MultiplexGroupLabel = "RHYTHM"
        group.NumberOfWaveformChannels, group.NumberOfWaveformSamples = signal_mv.shape
        group.SamplingFrequency = fs
        group.WaveformBitsAllocated, group.WaveformSampleInterpretation = 16, "SS"
        group.ChannelDefinitionSequence = [_dicom_channel(n, uv_per_bit, units) for n in names]
        group.WaveformData = _digital(signal_mv, uv_per_bit).T.astype("<i2").tobytes()
        ds.WaveformSequence = [group]
    ds.save_as(path, enforce_file_format=True)
    return path


def _dicom_channel(name: str, uv_per_bit: float, units: str) -> object:
    from pydicom.dataset import Dataset

    source, unit, ch = Dataset(), Dataset(), Dataset()
    source.CodeValue, source.CodingSchemeDesignator = DICOM_CODE.get(name, "5.6.3-9-0"), "SCPECG"
    source.CodeMeaning = "Lead I (Einthoven)" if name == "I" else f"Lead {name}"
    unit.CodeValue, unit.CodingSchemeDesignator, unit.CodeMeaning = units, "UCUM", units
    ch.ChannelSourceSequence, ch.ChannelSensitivityUnitsSequence = [source], [unit]
    ch.ChannelSensitivity, ch.ChannelSensitivityCorrectionFactor = uv_per_bit, 1
    ch.ChannelBaseline, ch.WaveformBitsStored = 0, 16
    return ch


# ---- HL7 aECG ------------------------------------------------------------------------------

def write_aecg(path: Path, signal_mv: np.ndarray, fs: float, names: list[str], *,
               uv_per_digit: float = 1.0, unit: str = "uV", prolog: str = "") -> Path:
    """AnnotatedECG with one RHYTHM series: a GLIST_TS time sequence and one SLIST_PQ per lead."""
    q = lambda tag: f"{{{AECG_NS}}}{tag}"  # noqa: E731
    root = ET.Element(q("AnnotatedECG"))
    ET.SubElement(ET.SubElement(root, q("effectiveTime")), q("low"), value="20240301081500")
    person = root
    for tag in ("componentOf", "timepointEvent", "componentOf", "subjectAssignment", "subject",
                "trialSubject", "subjectDemographicPerson"):
        person = ET.SubElement(person, q(tag))
    ET.SubElement(person, q("administrativeGenderCode"), code="F")
    ET.SubElement(person, q("birthTime"), value="19700301")
    series = ET.SubElement(ET.SubElement(root, q("component")), q("series"))
    ET.SubElement(series, q("code"), code="RHYTHM", codeSystem="2.16.840.1.113883.5.4")
    author = ET.SubElement(ET.SubElement(series, q("author")), q("seriesAuthor"))
    device = ET.SubElement(author, q("manufacturedSeriesDevice"))
    ET.SubElement(device, q("manufacturerModelName")).text = "ELI 280"
    ET.SubElement(ET.SubElement(author, q("manufacturerOrganization")), q("name")).text = "Mortara"
    seq_set = ET.SubElement(ET.SubElement(series, q("component")), q("sequenceSet"))
    time = ET.SubElement(ET.SubElement(seq_set, q("component")), q("sequence"))
    ET.SubElement(time, q("code"), code="TIME_ABSOLUTE")
    value = ET.SubElement(time, q("value"))
    ET.SubElement(value, q("head"), value="20240301081500.000")
    ET.SubElement(value, q("increment"), value=f"{1 / fs:.10g}", unit="s")
    for name, row in zip(names, _digital(signal_mv, uv_per_digit)):
        seq = ET.SubElement(ET.SubElement(seq_set, q("component")), q("sequence"))
        ET.SubElement(seq, q("code"), code=f"MDC_ECG_LEAD_{name.upper()}",
                      codeSystem="2.16.840.1.113883.6.24")
        value = ET.SubElement(seq, q("value"))
        ET.SubElement(value, q("origin"), value="0", unit=unit)
        ET.SubElement(value, q("scale"), value=f"{uv_per_digit:g}", unit=unit)
        ET.SubElement(value, q("digits")).text = " ".join(map(str, row.tolist()))
    ET.register_namespace("", AECG_NS)
    path.write_bytes(prolog.encode() + ET.tostring(root))
    return path


# ---- GE MUSE -------------------------------------------------------------------------------

def write_muse(path: Path, signal_mv: np.ndarray, fs: float, names: list[str], *,
               eight_lead: bool = False, uv_per_bit: float = 4.88, units: str = "MICROVOLTS",
               cut_base64: int = 0, drop_leads: int = 0, median_s: float = 0.0) -> Path:
    """RestingECG with a Rhythm waveform (8-lead storage: I, II, V1-V6 only), DOCTYPE as MUSE
    writes it, and a Median waveform of the first `median_s` seconds when asked. `cut_base64`
    chars are cut off every lead's base64; `drop_leads` LeadData removed while NumberofLeads
    still counts them."""
    root = ET.Element("RestingECG")
    ET.SubElement(ET.SubElement(root, "MuseInfo"), "MuseVersion").text = "9.0.9.18167"
    patient = ET.SubElement(root, "PatientDemographics")
    for tag, text in (("PatientAge", "57"), ("AgeUnits", "YEARS"), ("Gender", "MALE")):
        ET.SubElement(patient, tag).text = text
    test = ET.SubElement(root, "TestDemographics")
    for tag, text in (("AcquisitionDevice", "MAC55"), ("AcquisitionDate", "03-01-2024"),
                      ("AcquisitionTime", "08:15:00")):
        ET.SubElement(test, tag).text = text
    if median_s:
        _muse_waveform(root, "Median", signal_mv[:, : round(median_s * fs)], fs, names,
                       eight_lead, uv_per_bit, units, 0, 0)
    _muse_waveform(root, "Rhythm", signal_mv, fs, names, eight_lead, uv_per_bit, units,
                   cut_base64, drop_leads)
    path.write_bytes(b'<?xml version="1.0" encoding="ISO-8859-1"?>\n'
                     b'<!DOCTYPE RestingECG SYSTEM "restecg.dtd">\n'
                     + ET.tostring(root, encoding="unicode").encode("latin-1"))
    return path


def _muse_waveform(root: ET.Element, kind: str, signal_mv: np.ndarray, fs: float,
                   names: list[str], eight_lead: bool, uv_per_bit: float, units: str,
                   cut_base64: int, drop_leads: int) -> None:
    keep = [names.index(n) for n in EIGHT_LEADS] if eight_lead else list(range(len(names)))
    wave = ET.SubElement(root, "Waveform")
    for tag, text in (("WaveformType", kind), ("NumberofLeads", str(len(keep))),
                      ("SampleBase", f"{fs:g}"), ("SampleExponent", "0")):
        ET.SubElement(wave, tag).text = text
    digital = _digital(signal_mv, uv_per_bit)
    for k in keep[: len(keep) - drop_leads]:
        lead = ET.SubElement(wave, "LeadData")
        data = _b64(digital[k])
        for tag, text in (("LeadByteCountTotal", str(2 * digital.shape[1])),
                          ("LeadSampleCountTotal", str(digital.shape[1])),
                          ("LeadAmplitudeUnitsPerBit", f"{uv_per_bit:g}"),
                          ("LeadAmplitudeUnits", units), ("LeadID", names[k]),
                          ("WaveFormData", data[: len(data) - cut_base64])):
            ET.SubElement(lead, tag).text = text


# ---- Philips -------------------------------------------------------------------------------

def write_philips(path: Path, signal_mv: np.ndarray, fs: float, names: list[str], *,
                  uv_per_bit: float = 5.0, xli: bool = False, version: str = "1.04",
                  data_leads: int | None = None) -> Path:
    """restingecgdata with parsedwaveforms: plain int16 lead after lead, or XLI chunks.
    `data_leads` writes only that many leads' data while leadlabels names them all."""
    q = lambda tag: f"{{{PHILIPS_NS}}}{tag}"  # noqa: E731
    root = ET.Element(q("restingecgdata"))
    info = ET.SubElement(root, q("documentinfo"))
    ET.SubElement(info, q("documenttype")).text = "PhilipsECG"
    ET.SubElement(info, q("documentversion")).text = version
    acq = ET.SubElement(root, q("dataacquisition"), date="2024-03-01", time="08:15:00")
    ET.SubElement(acq, q("machine"), detaildescription="PageWriter TC50")
    sig = ET.SubElement(acq, q("signalcharacteristics"))
    ET.SubElement(sig, q("samplingrate")).text = f"{fs:g}"
    ET.SubElement(sig, q("signalresolution")).text = f"{uv_per_bit:g}"
    gen = ET.SubElement(ET.SubElement(root, q("patient")), q("generalpatientdata"))
    ET.SubElement(ET.SubElement(gen, q("age")), q("years")).text = "71"
    ET.SubElement(gen, q("sex")).text = "Female"
    stored = philips_residuals(_digital(signal_mv, uv_per_bit), names)[:data_leads]
    text = base64.b64encode(xli_encode(stored)).decode() if xli else _b64(stored.ravel())
    waves = ET.SubElement(ET.SubElement(root, q("waveforms")), q("parsedwaveforms"),
                          dataencoding="Base64", compression="XLI" if xli else "Uncompressed",
                          numberofleads=str(len(names)), leadlabels=" ".join(names),
                          durationperchannel=f"{signal_mv.shape[1] * 1000 / fs:g}")
    waves.text = text
    ET.register_namespace("", PHILIPS_NS)
    path.write_bytes(ET.tostring(root))
    return path


def philips_residuals(digital: np.ndarray, names: list[str]) -> np.ndarray:
    """What Philips stores for III, aVR, aVL, aVF: the inverse of the reader's rebuild."""
    x = digital.copy()
    if names[:6] == LIMB_LEADS:
        i, ii, iii = digital[0], digital[1], digital[2]
        x[2] = ii - i - iii
        x[3] = -digital[3] - (i + ii) // 2
        x[4] = (i - iii) // 2 - digital[4]
        x[5] = (ii + iii) // 2 - digital[5]
    return x


def xli_encode(leads: np.ndarray) -> bytes:
    """Each lead: second-order residuals, high/low byte halves, 10-bit LZW, 8-byte header."""
    out = bytearray()
    for s in leads.astype(np.int64):
        values = s.copy()
        second = s[2:] - 2 * s[1:-1] + s[:-2]  # s[i] - 2 s[i-1] + s[i-2], i = 2 ... n-1
        first = int(-second[0])
        values[2:-1] = -second[1:] + RESIDUAL_OFFSET  # values[i-1] carries r[i] for i >= 3
        values[-1] = RESIDUAL_OFFSET
        v = values.astype(np.int16).view(np.uint16)
        chunk = lzw_encode(bytes((v >> 8).astype(np.uint8)) + bytes((v & 0xFF).astype(np.uint8)))
        out += struct.pack("<ihh", len(chunk), 0, first) + chunk
    return bytes(out)


def lzw_encode(data: bytes) -> bytes:
    """LZW with CODE_BITS-bit codes, MSB first; the table stops growing at MAX_CODE."""
    table = {bytes([i]): i for i in range(256)}
    codes, w = [], b""
    for byte in data:
        wc = w + bytes([byte])
        if wc in table:
            w = wc
            continue
        codes.append(table[w])
        if len(table) <= MAX_CODE:
            table[wc] = len(table)
        w = bytes([byte])
    if w:
        codes.append(table[w])
    bits = "".join(format(c, f"0{CODE_BITS}b") for c in codes)
    bits += "0" * (-len(bits) % 8)
    return int(bits, 2).to_bytes(len(bits) // 8, "big") if bits else b""
