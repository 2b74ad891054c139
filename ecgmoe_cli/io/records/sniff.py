"""Hospital exports told by their content, where a suffix says too little.

DICOM files often have no extension, or end in the last number of their UID
(`1.2.840.113619.2.55.3.320`): they are recognised by the 'DICM' marker at offset 128 and
their file meta SOP class (an ECG waveform; a CT image is not a record). Any XML ends in
`.xml`: its root element says whether it is an ECG export. Only the first bytes (DICOM) or the
root's start tag (XML) are read, so a folder scan stays cheap.
"""

from __future__ import annotations

from pathlib import Path

from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.io.records.xml_safe import root_name

XML_ROOTS = ("AnnotatedECG", "RestingECG", "restingecgdata")  # HL7 aECG, GE MUSE, Philips
DICOM_SUFFIXES = (".dcm", ".dicom")


def has_dicom_marker(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(128)
        return f.read(4) == b"DICM"


def is_export(path: Path) -> bool:
    """True for an ECG DICOM or an ECG XML export. XML that cannot be parsed up to its root
    (a billion-laughs DTD, a cut file) counts: its reader then says why it is unreadable."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".xml":
            try:
                return root_name(path) in XML_ROOTS
            except EcgMoeError:
                return True
        if suffix in DICOM_SUFFIXES or suffix == "" or suffix[1:].isdigit():
            return has_dicom_marker(path) and _is_ecg_dicom(path)
    except OSError:
        return suffix in (".xml", *DICOM_SUFFIXES)  # named as an export: its reader says why
    return False


def _is_ecg_dicom(path: Path) -> bool:
    """The file meta's SOP class is an ECG waveform (a meta that does not parse counts)."""
    from pydicom.filereader import read_file_meta_info

    from ecgmoe_cli.io.records.dicom_ecg import ECG_SOP_CLASS_PREFIX

    try:
        meta = read_file_meta_info(path)
    except Exception:  # noqa: BLE001 (pydicom raises many types on a damaged header)
        return True
    return str(meta.get("MediaStorageSOPClassUID", "")).startswith(ECG_SOP_CLASS_PREFIX)
