"""WFDB header parsing and a NumPy fast path for the common single-file record.

Most corpora (PTB-XL, CinC, MIT-BIH, LUDB) store all channels of a record in one format 16,
212 or 80 file. Parsing the header ourselves and reading that file with `np.fromfile` is several
times faster than `wfdb.rdrecord`, which matters at hundreds of records per second. Anything
else (multi-segment, several files, samples-per-frame > 1, skew, other formats) is left to wfdb.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ecgmoe_cli.errors import EcgMoeError

FAST_FORMATS = {"16", "212", "80"}
_MAX_FS = 100_000.0  # above this a "sampling rate" is a corrupt header, not an ECG
_MAX_HEADER = 16 << 20  # bytes; a multi-segment header of 100,000 segments is ~3 MiB
_DEFAULT_GAIN = 200.0  # WFDB: gain 0 or absent means 200 adu per physical unit
_NAN_SENTINEL = {"16": -32768, "212": -2048, "80": -128}
_SIG_FMT = re.compile(
    r"^(?P<fmt>\d+)(?:x(?P<spf>\d+))?(?::(?P<skew>-?\d+))?(?:\+(?P<offset>\d+))?$")
_GAIN = re.compile(
    r"^(?P<gain>[-+0-9.eE]+)(?:\((?P<base>-?\d+)\))?(?:/(?P<units>.*))?$")
_TO_MV = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "v": 1e3, "nv": 1e-6,
          "millivolts": 1.0, "microvolts": 1e-3}  # the last two: GE MUSE


@dataclass
class Channel:
    """One signal line of a header."""

    file: str
    fmt: str
    spf: int
    skew: int
    offset: int
    gain: float
    baseline: int
    units: str
    name: str


@dataclass
class Header:
    """A parsed WFDB header (a multi-segment one lists its segments instead of channels)."""

    name: str
    fs: float
    n_samples: int | None
    channels: list[Channel]
    comments: list[str] = field(default_factory=list)
    multi_segment: bool = False
    segments: list[str] = field(default_factory=list)  # multi-segment: its segments, not '~' gaps


def unit_scale(units: str) -> float | None:
    """Factor to mV for voltage units ('uV' -> 1e-3); None for other units (mmHg, NU, ...)."""
    return _TO_MV.get(units.strip().lower())


def _int(text: str, what: str, path: Path) -> int:
    try:
        return int(text)
    except ValueError:
        raise EcgMoeError(f"bad header: {what} {text!r} is not an integer", path) from None


def parse_header(path: Path) -> Header:
    """Parse a .hea file; raises EcgMoeError for anything that is not a WFDB header."""
    try:
        if path.exists() and not path.is_file():
            raise EcgMoeError("header is not a regular file (a named pipe, device or folder)",
                              path)
        if path.exists() and path.stat().st_size > _MAX_HEADER:
            raise EcgMoeError(f"header is larger than {_MAX_HEADER >> 20} MiB: not a WFDB "
                              "header", path)
        raw = path.read_bytes()
    except OSError as e:
        raise EcgMoeError(f"cannot read header: {e.strerror or e}", path) from None
    text = raw.decode("utf-8", errors="replace")
    lines, comments = [], []
    for ln in text.splitlines():
        s = ln.strip()
        if s.startswith("#"):
            comments.append(s.lstrip("#").strip())
        elif s:
            lines.append(s)
    if not lines:
        raise EcgMoeError("bad header: no record line", path)
    rec = lines[0].split()
    if len(rec) < 2:
        raise EcgMoeError("bad header: record line needs a name and a signal count", path)
    name, multi = rec[0], "/" in rec[0]
    n_sig = _int(rec[1], "signal count", path)
    fs = 250.0
    if len(rec) > 2:
        fs_text = rec[2].split("/")[0].split("(")[0]
        try:
            fs = float(fs_text)
        except ValueError:
            raise EcgMoeError(f"bad header: sampling rate {rec[2]!r}", path) from None
    if not np.isfinite(fs) or fs <= 0 or fs > _MAX_FS:
        raise EcgMoeError(f"bad header: sampling rate {fs} Hz is not plausible", path)
    n_samples = _int(rec[3], "sample count", path) if len(rec) > 3 else None
    if n_sig < 0 or (n_samples is not None and n_samples < 0):
        raise EcgMoeError("bad header: negative signal or sample count", path)
    if multi:
        segments = [ln.split()[0] for ln in lines[1:] if ln.split()[0] != "~"]
        return Header(name, fs, n_samples, [], comments, multi_segment=True, segments=segments)
    if len(lines) - 1 < n_sig:
        raise EcgMoeError(f"bad header: {n_sig} signals announced, {len(lines) - 1} described",
                          path)
    return Header(name, fs, n_samples, [_channel(ln, path) for ln in lines[1:1 + n_sig]], comments)


def _channel(line: str, path: Path) -> Channel:
    parts = line.split(maxsplit=8)
    if len(parts) < 2:
        raise EcgMoeError(f"bad header: signal line {line[:60]!r}", path)
    m = _SIG_FMT.match(parts[1])
    if m is None:
        raise EcgMoeError(f"bad header: storage format {parts[1]!r}", path)
    adc_zero = _int(parts[4], "ADC zero", path) if len(parts) > 4 else 0
    gain, baseline, units = _DEFAULT_GAIN, adc_zero, "mV"
    if len(parts) > 2:
        g = _GAIN.match(parts[2])
        if g is None:
            raise EcgMoeError(f"bad header: gain {parts[2]!r}", path)
        try:
            gain = float(g["gain"]) or _DEFAULT_GAIN
        except ValueError:
            raise EcgMoeError(f"bad header: gain {parts[2]!r}", path) from None
        if g["base"] is not None:
            baseline = int(g["base"])
        units = g["units"] or "mV"
    return Channel(
        file=parts[0], fmt=m["fmt"], spf=int(m["spf"] or 1), skew=int(m["skew"] or 0),
        offset=int(m["offset"] or 0), gain=gain, baseline=baseline, units=units,
        name=parts[8].strip() if len(parts) > 8 else "",
    )


def data_file(header_path: Path, file_name: str) -> Path:
    """The signal file a header names, refused when it points outside the header's folder."""
    folder = header_path.parent
    target = folder / file_name
    if os.path.isabs(file_name) or ".." in Path(file_name).parts:
        raise EcgMoeError(f"header names a signal file outside its folder ({file_name!r})",
                          header_path)
    return target


def checked_file(header_path: Path, file_name: str) -> Path:
    """`data_file`, and once links are followed still inside the header's own folder and a
    regular file: a named pipe would block the reader, /dev/zero never ends. A missing file
    passes (the reader names it)."""
    path = data_file(header_path, file_name)
    if not (path.exists() or path.is_symlink()):
        return path
    real, home = path.resolve(), header_path.resolve().parent
    if home not in real.parents:
        raise EcgMoeError(f"file {file_name!r} links out of its record's folder (to {real})",
                          header_path)
    if not real.is_file():
        raise EcgMoeError(f"file {file_name!r} is not a regular file (a named pipe, device "
                          "or folder)", header_path)
    return path


_MAT_V4_TYPES = {"16": 30, "32": 20, "80": 50}  # MOPT codes: little-endian int16/int32/uint8


def check_mat_v4(header_path: Path, h: Header) -> None:
    """A `.mat` signal file (CinC 2020/2021) must be the MATLAB v4 matrix its byte offset skips:
    a v5/v7.3 (HDF5) file or a struct read at that offset is garbage, not an ECG."""
    for name in sorted({c.file for c in h.channels if c.file.lower().endswith(".mat")}):
        chans = [c for c in h.channels if c.file == name]
        path = data_file(header_path, name)
        if not path.is_file():
            continue  # the reader names a missing file
        with open(path, "rb") as f:
            head = f.read(128)
        if head.startswith(b"MATLAB") or head.startswith(b"\x89HDF"):
            kind = "v7.3 (HDF5)" if b"7.3" in head[:116] or b"HDF" in head[:8] else "v5"
            raise EcgMoeError(f"signal file {name!r} is a MATLAB {kind} file; the header's "
                              f"byte offset expects a MATLAB v4 matrix", header_path)
        if len(head) < 20:
            raise EcgMoeError(f"signal file {name!r} is too short for a MATLAB v4 header",
                              header_path)
        mopt, rows, cols, imag, namlen = np.frombuffer(head[:20], "<i4")
        want = _MAT_V4_TYPES.get(chans[0].fmt)
        if (mopt != want or rows != len(chans) or imag != 0 or 20 + namlen != chans[0].offset
                or cols < (h.n_samples or 0)):
            raise EcgMoeError(
                f"signal file {name!r} is not the MATLAB v4 matrix its header describes "
                f"(type {mopt}, {rows} x {cols}, name of {namlen} bytes; expected type "
                f"{want}, {len(chans)} x {h.n_samples} at byte {chans[0].offset})", header_path)


def stored_bytes(n_values: int, fmt: str) -> int:
    """Bytes that hold `n_values` samples in a fast format (212: 3 bytes per 2 samples)."""
    return {"16": 2 * n_values, "80": n_values}.get(fmt, -(-3 * n_values // 2))


def fast_path_ok(h: Header) -> bool:
    """True when read_fast can read the record: fast formats, one format and byte offset per
    file, no multiple samples per frame, no skew."""
    if h.multi_segment or not h.channels:
        return False
    per_file: dict[str, tuple[str, int]] = {}
    for c in h.channels:
        if c.fmt not in FAST_FORMATS or c.spf != 1 or c.skew != 0 or c.file == "~":
            return False
        if per_file.setdefault(c.file, (c.fmt, c.offset)) != (c.fmt, c.offset):
            return False
    return True


def read_fast(header_path: Path, h: Header) -> np.ndarray:
    """Physical signal (leads, n) float32, NaN for the format's missing-sample value."""
    files: dict[str, list[int]] = {}
    for i, c in enumerate(h.channels):
        files.setdefault(c.file, []).append(i)
    parts = {name: _read_file(header_path, h, rows) for name, rows in files.items()}
    n = min(d.shape[1] for d in parts.values())
    out = np.empty((len(h.channels), n), dtype=np.float32)
    for name, rows in files.items():
        out[rows] = parts[name][:, :n]
    return out


def _read_file(header_path: Path, h: Header, rows: list[int]) -> np.ndarray:
    """The physical (len(rows), n) signal stored in one file."""
    ch = [h.channels[i] for i in rows]
    n_sig, fmt = len(ch), ch[0].fmt
    path = checked_file(header_path, ch[0].file)
    try:
        with open(path, "rb") as f:
            f.seek(ch[0].offset)  # only the bytes the header declares (a 2 GB .dat: 24 kB)
            raw = f.read(stored_bytes(h.n_samples * n_sig, fmt) if h.n_samples else -1)
    except FileNotFoundError:
        raise EcgMoeError(f"signal file {ch[0].file!r} is missing", header_path) from None
    except OSError as e:
        raise EcgMoeError(f"cannot read signal file {ch[0].file!r}: {e.strerror or e}",
                          header_path) from None
    digital = _decode(raw, fmt)
    n_avail = digital.size // n_sig
    if not h.n_samples and digital.size % n_sig:
        raise EcgMoeError(f"signal file {ch[0].file!r} is not a whole number of frames "
                          f"({digital.size} samples for {n_sig} signals)", header_path)
    if fmt == "16" and not h.n_samples and len(raw) % 2:
        raise EcgMoeError(f"signal file {ch[0].file!r} has an odd byte count for format 16",
                          header_path)
    n = h.n_samples if h.n_samples else n_avail
    if n_avail < n:
        raise EcgMoeError(f"signal file {ch[0].file!r} is truncated: {n_avail} of {n} samples",
                          header_path)
    d = digital[: n * n_sig].reshape(n, n_sig).T  # (n_sig, n) view of the frames
    gain = np.array([c.gain for c in ch], dtype=np.float32)[:, None]
    base = np.array([c.baseline for c in ch], dtype=np.float32)[:, None]
    scale = np.array([unit_scale(c.units) or 1.0 for c in ch], dtype=np.float32)[:, None]
    out = np.array(d, dtype=np.float32, order="C")  # converted and transposed in one pass
    out -= base
    out *= scale / gain
    missing = d == _NAN_SENTINEL[fmt]
    if missing.any():
        out[missing] = np.nan
    return out


def _decode(raw: bytes, fmt: str) -> np.ndarray:
    """Digital samples, flat in file order (frame after frame)."""
    if fmt == "16":
        return np.frombuffer(raw, dtype="<i2", count=len(raw) // 2)
    if fmt == "80":
        return np.frombuffer(raw, dtype=np.uint8).astype(np.int16) - 128
    # 212: two 12-bit samples in three bytes.
    b = np.frombuffer(raw, dtype=np.uint8, count=len(raw) // 3 * 3).reshape(-1, 3).astype(np.int16)
    out = np.empty((b.shape[0], 2), dtype=np.int16)
    out[:, 0] = b[:, 0] | ((b[:, 1] & 0x0F) << 8)
    out[:, 1] = b[:, 2] | ((b[:, 1] & 0xF0) << 4)
    flat = out.ravel()
    if len(raw) % 3 == 2:  # an odd total: the last sample sits alone in two bytes
        flat = np.append(flat, np.int16(raw[-2] | ((raw[-1] & 0x0F) << 8)))
    flat[flat > 2047] -= 4096
    return flat
