"""Hardened XML for ECG exports: defusedxml parsing, namespace-free tags, strict base64.

Hospital XML comes from outside: entity declarations (billion laughs) and external entities
are refused by defusedxml before anything expands, and files over MAX_XML_BYTES are refused
unread, so one hostile file costs an error row, not the machine's memory.
"""

from __future__ import annotations

import base64
import binascii
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from ecgmoe_cli.errors import EcgMoeError

MAX_XML_BYTES = 256 * 2**20  # a 10 s 12-lead export is well under 1 MB


def _xml_error(e: Exception, path: Path) -> EcgMoeError:
    """One line for every way defusedxml or expat refuses a file."""
    import defusedxml

    if isinstance(e, defusedxml.EntitiesForbidden):
        return EcgMoeError("XML declares entities: refused (entity expansion and external "
                           "entities are never read)", path)
    if isinstance(e, defusedxml.DefusedXmlException):
        return EcgMoeError(f"XML refused ({type(e).__name__})", path)
    return EcgMoeError(f"not well-formed XML ({e})", path)


def parse_xml(path: Path) -> ET.Element:
    """The root of a whole XML file, every tag stripped of its namespace."""
    import defusedxml.ElementTree as SafeET

    size = path.stat().st_size
    if size > MAX_XML_BYTES:
        raise EcgMoeError(f"XML export of {size / 2**20:.0f} MB is larger than the "
                          f"{MAX_XML_BYTES // 2**20} MB this reader parses", path)
    try:
        root = SafeET.parse(path).getroot()
    except (ET.ParseError, ValueError) as e:  # defusedxml's refusals are ValueErrors
        raise _xml_error(e, path) from None
    for el in root.iter():
        el.tag = local_name(el.tag)
    return root


def root_name(path: Path) -> str:
    """The root element's local name, parsing no further than its start tag."""
    import defusedxml.ElementTree as SafeET

    with open(path, "rb") as f:  # closed here, though the parse stops at the first tag
        try:
            for _, el in SafeET.iterparse(f, events=("start",)):
                return local_name(el.tag)
        except (ET.ParseError, ValueError) as e:
            raise _xml_error(e, path) from None
    raise EcgMoeError("XML holds no element", path)


def local_name(tag: object) -> str:
    """'{urn:hl7-org:v3}sequence' -> 'sequence'."""
    return str(tag).rpartition("}")[2]


def text_of(el: ET.Element | None, what: str, path: Path) -> str:
    """The stripped text of a required element."""
    text = "" if el is None or el.text is None else el.text.strip()
    if not text:
        raise EcgMoeError(f"no {what} in the export", path)
    return text


def number(text: str | None, what: str, path: Path) -> float:
    """A finite number from an element or attribute, or a one-line error naming the field."""
    try:
        value = float(str(text).strip())
    except ValueError:
        value = float("nan")
    if not np.isfinite(value):
        raise EcgMoeError(f"{what} is {text!r}, not a number", path)
    return value


def int16_samples(text: str | None, what: str, path: Path) -> np.ndarray:
    """Little-endian int16 samples from base64 text; truncated or corrupt base64 is refused."""
    data = base64_bytes(text, what, path)
    if len(data) % 2:
        raise EcgMoeError(f"{what} holds {len(data)} bytes, not whole 16-bit samples", path)
    return np.frombuffer(data, "<i2")


def base64_bytes(text: str | None, what: str, path: Path) -> bytes:
    """Strict base64 (whitespace allowed, as exports wrap lines); anything else is an error."""
    try:
        return base64.b64decode("".join((text or "").split()), validate=True)
    except (binascii.Error, ValueError) as e:
        raise EcgMoeError(f"{what} is not valid base64, truncated or corrupt ({e})", path) from None
