"""Philips XLI: the compression of `parsedwaveforms compression="XLI"` (as sierra-ecg-tools
reads it).

The stream is one chunk per lead: an 8-byte header (int32 chunk size, int16 code, int16 first
difference) and the chunk, LZW with 10-bit codes (MSB first, no reset code; the table holds
codes up to 1022, and 1023 ends a chunk). The decoded bytes
are the high bytes of every 16-bit value, then the low bytes. The first two values are
samples; from then on each value is a second-order prediction residual (offset by 64) that
applies one sample later, the header's difference standing in for the first.
"""

from __future__ import annotations

import struct

import numpy as np

CODE_BITS = 10
MAX_CODE = (1 << CODE_BITS) - 2
RESIDUAL_OFFSET = 64
LIMB_LEADS = ["I", "II", "III", "aVR", "aVL", "aVF"]  # Philips stores the last four as residuals


def xli_decode(data: bytes) -> list[np.ndarray]:
    """Every lead of an XLI stream, int64 samples (raises ValueError on a damaged stream)."""
    leads, offset = [], 0
    while offset < len(data):
        if offset + 8 > len(data):
            raise ValueError(f"XLI chunk header cut at byte {offset}")
        size, _code, first = struct.unpack_from("<ihh", data, offset)
        offset += 8
        if size <= 0 or offset + size > len(data):
            raise ValueError(f"XLI chunk of {size} bytes at byte {offset - 8} overruns the stream")
        raw = lzw_decode(data[offset : offset + size])
        offset += size
        leads.append(undelta(unpack_halves(raw), first))
    return leads


def lzw_decode(block: bytes) -> bytes:
    """LZW, CODE_BITS-bit codes packed MSB first; the table stops growing at MAX_CODE."""
    table = [bytes([i]) for i in range(256)]
    out = bytearray()
    prev = b""
    bits = np.unpackbits(np.frombuffer(block, np.uint8))
    n_codes = len(bits) // CODE_BITS
    weights = 1 << np.arange(CODE_BITS - 1, -1, -1)
    codes = bits[: n_codes * CODE_BITS].reshape(n_codes, CODE_BITS) @ weights
    for code in codes.tolist():
        if code > MAX_CODE:
            break
        if code < len(table):
            entry = table[code]
        elif code == len(table) and prev:
            entry = prev + prev[:1]  # the code being defined by this very step (KwKwK)
        else:
            raise ValueError(f"XLI code {code} refers to no table entry")
        out += entry
        if prev and len(table) <= MAX_CODE:
            table.append(prev + entry[:1])
        prev = entry
    return bytes(out)


def unpack_halves(raw: bytes) -> np.ndarray:
    """High bytes first, low bytes second -> int16 values (an odd count is padded with 0)."""
    b = np.frombuffer(raw + b"\0" * (len(raw) % 2), np.uint8)
    half = len(b) // 2
    return ((b[:half].astype(np.uint16) << 8) | b[half:]).view(np.int16).astype(np.int64)


def undelta(values: np.ndarray, first: int) -> np.ndarray:
    """s[i] = 2 s[i-1] - s[i-2] - r[i], r[2] = first, r[i] = values[i-1] - 64: a double sum."""
    if len(values) < 3:
        return values
    r = np.concatenate([[first], values[2:-1] - RESIDUAL_OFFSET])  # r[2] ... r[n-1]
    slope = (values[1] - values[0]) - np.cumsum(r)  # s[i] - s[i-1] for i = 2 ... n-1
    return np.concatenate([values[:2], values[1] + np.cumsum(slope)])


def rebuild_limb_leads(x: np.ndarray) -> np.ndarray:
    """Stored residuals of III, aVR, aVL, aVF (int rows 2-5, after I and II) -> the leads
    (Philips stores them so, compressed or not)."""
    x = x.copy()
    x[2] = x[1] - x[0] - x[2]
    x[3] = -x[3] - (x[0] + x[1]) // 2
    x[4] = (x[0] - x[2]) // 2 - x[4]
    x[5] = (x[1] + x[2]) // 2 - x[5]
    return x
