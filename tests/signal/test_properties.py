"""Property-based tests (hypothesis): random lengths, rates, NaN patterns and header text.

No exception may escape the signal functions, and every output keeps its documented shape,
dtype and mask; the reader turns any header text into a Record or an EcgMoeError.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.io.records.read import read_record
from ecgmoe_cli.signal.beats import heart_rate_bpm, rr_features
from ecgmoe_cli.signal.clean import clean, nan_repair, resample_filter
from ecgmoe_cli.signal.leads import CANONICAL_LEADS, canonicalize
from ecgmoe_cli.signal.rpeaks import detect_rpeaks
from ecgmoe_cli.signal.spec import PreprocessSpec

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])

RATES = st.one_of(st.sampled_from([50.0, 100.0, 128.0, 250.0, 257.0, 360.0, 500.0, 1000.0]),
                  st.floats(1.0, 2000.0))
ODD_RATES = st.sampled_from([0.0, -250.0, float("nan"), float("inf"), 1e-3, 1e9])


@st.composite
def signals(draw: st.DrawFn, max_seconds: float = 12.0) -> tuple[np.ndarray, float]:
    """(leads, n) float mV: beats, noise or flat, with NaN patterns and odd scales."""
    fs = draw(RATES)
    n_leads = draw(st.integers(1, 12))
    n = draw(st.integers(0, int(fs * max_seconds)))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    t = np.arange(n) / fs
    kind = draw(st.sampled_from(["beats", "noise", "flat", "spikes"]))
    if kind == "beats":
        rr = draw(st.floats(0.25, 2.0))
        x = sum(np.exp(-((t - r) ** 2) / (2 * 0.012**2)) for r in np.arange(0.3, n / fs, rr))
        x = np.asarray(x, float) + rng.normal(0, 0.02, n)
    elif kind == "noise":
        x = rng.normal(0, 1, n)
    elif kind == "flat":
        x = np.full(n, draw(st.floats(-5, 5)))
    else:
        x = np.zeros(n)
        x[rng.integers(0, max(n, 1), size=min(n, 5))] = 1e3
    sig = np.vstack([x * rng.uniform(-2, 2) for _ in range(n_leads)]) if n_leads else x[None]
    sig = sig * draw(st.sampled_from([1.0, 1e-9, 1e-3, 1e3]))
    nan = draw(st.sampled_from(["none", "sparse", "runs", "all", "lead", "inf"]))
    if n and nan == "sparse":
        sig[rng.random(sig.shape) < 0.05] = np.nan
    elif n and nan == "runs":
        for _ in range(3):
            a = int(rng.integers(0, n))
            run = int(rng.integers(1, max(n // 4, 2)))
            sig[int(rng.integers(0, n_leads)), a : a + run] = np.nan
    elif nan == "all":
        sig[:] = np.nan
    elif nan == "lead":
        sig[0] = np.nan
    elif n and nan == "inf":
        sig[:, rng.integers(0, n, size=3)] = np.inf
    return sig.reshape(n_leads, n), fs


@st.composite
def specs(draw: st.DrawFn) -> PreprocessSpec:
    fs = draw(st.sampled_from([50.0, 100.0, 250.0, 500.0]))
    return PreprocessSpec(fs=fs, bandpass_hz=(0.5, min(40.0, fs / 2 - 1)),
                          max_beats=draw(st.integers(1, 40)),
                          beat_pre_s=draw(st.floats(0.0, 0.4)),
                          beat_post_s=draw(st.floats(0.02, 0.6)))


def _check_peaks(peaks: np.ndarray, n: int) -> None:
    assert isinstance(peaks, np.ndarray) and peaks.dtype == np.int64 and peaks.ndim == 1
    assert np.all(np.diff(peaks) > 0), "R-peaks must be strictly increasing"
    assert peaks.size == 0 or (peaks[0] >= 0 and peaks[-1] < n)


# ---- beat segmentation (signal/beats.py) -------------------------------------------------

@SETTINGS
@given(signals())
def test_detect_rpeaks_never_raises_and_returns_sorted_indices_inside(case) -> None:
    sig, fs = case
    _check_peaks(detect_rpeaks(sig, fs), sig.shape[1])
    if sig.shape[0] == 1:
        assert np.array_equal(detect_rpeaks(sig[0], fs), detect_rpeaks(sig, fs))


@SETTINGS
@given(signals(max_seconds=3.0), ODD_RATES)
def test_detect_rpeaks_with_impossible_rates_gives_an_array(case, fs: float) -> None:
    sig, _ = case
    _check_peaks(detect_rpeaks(sig, fs), sig.shape[1])


@SETTINGS
@given(st.lists(st.integers(0, 10**7), max_size=300, unique=True), RATES)
def test_rr_features_shape_and_values(peaks: list[int], fs: float) -> None:
    r = np.sort(np.asarray(peaks, np.int64))
    rr = rr_features(r, fs)
    assert rr.shape == (r.size, 4) and rr.dtype == np.float32
    assert np.isfinite(rr).all() and (rr >= 0).all()
    if r.size >= 2:
        assert np.allclose(rr[1:, 0], np.diff(r) / fs, rtol=1e-5)  # pre-RR is the interval
        assert np.allclose(rr[:-1, 1], np.diff(r) / fs, rtol=1e-5)  # post-RR the next one
    hr = heart_rate_bpm(r, fs)
    assert np.isnan(hr) if r.size < 2 else hr > 0


@SETTINGS
@given(signals(max_seconds=12.0))
def test_detected_peaks_feed_rr_features(case) -> None:
    """The chain prepare runs: whatever the detector returns, rr_features accepts."""
    sig, fs = case
    peaks = detect_rpeaks(sig, fs)
    assert rr_features(peaks, fs).shape == (peaks.size, 4)


# ---- lead canonicalisation (signal/leads.py) ----------------------------------------------

LEAD_WORDS = ["I", "II", "III", "aVR", "AVR", "avr", "aVL", "aVF", "V1", "v2", "V3", "V4", "V5",
              "V6", "MLII", "ML2", "MCL1", "ECG", "ECG1", "lead II", "ABP", "PLETH", "RESP", "vx",
              "vy", "vz", "", " ", "II ", "V7", "Résumé", "\x00", "-", "I;II", "12"]
LEAD_NAMES = st.lists(st.one_of(st.sampled_from(LEAD_WORDS), st.text(max_size=8)), max_size=16)


@SETTINGS
@given(LEAD_NAMES)
def test_canonicalize_maps_into_the_record_and_never_twice(names: list[str]) -> None:
    m = canonicalize(names)
    assert len(m.source_index) == 12
    used = [i for i in m.source_index if i is not None]
    assert all(isinstance(i, int) and 0 <= i < len(names) for i in used)
    assert len(used) == len(set(used)), "one file lead feeds one canonical lead"
    assert all(isinstance(w, str) and "\n" not in w for w in m.warnings)
    assert all(d in names for d in m.dropped)
    for k, canon in enumerate(CANONICAL_LEADS):  # an exact name is never ignored
        if canon in names:
            assert m.source_index[k] is not None, (canon, names)


# ---- header parsing (io/records/read.read_record) -------------------------------------

GOOD_HEADER = ("rec 2 250 1000\n"
               "rec.dat 16 200/mV 16 0 0 0 0 I\n"
               "rec.dat 16 200/mV 16 0 0 0 0 II\n"
               "# Age: 50\n")
TOKENS = ["", "0", "-1", "-250", "1e9", "1e300", "nan", "inf", "250", "2", "3", "16", "212", "8",
          "999", "200/mV", "0/mV", "-5/uV", "x.dat", "../x.dat", "/etc/passwd", "rec.dat",
          "I", "II", "é", "\x00", "#", "1000000000000", "250/1000", "250(0)", "\t"]


@st.composite
def headers(draw: st.DrawFn) -> str:
    """A valid header with tokens swapped, lines dropped or doubled, or plain random text."""
    if draw(st.booleans()) and draw(st.booleans()):
        return draw(st.text(max_size=200))
    lines = [ln.split(" ") for ln in GOOD_HEADER.splitlines()]
    for _ in range(draw(st.integers(1, 4))):
        li = draw(st.integers(0, len(lines) - 1))
        if lines[li]:
            ti = draw(st.integers(0, len(lines[li]) - 1))
            lines[li][ti] = draw(st.one_of(st.sampled_from(TOKENS), st.text(max_size=6)))
    if draw(st.booleans()):
        lines.insert(draw(st.integers(0, len(lines))), lines[draw(st.integers(0, 2))])
    if draw(st.booleans()):
        del lines[draw(st.integers(0, len(lines) - 1))]
    return "\n".join(" ".join(ln) for ln in lines) + "\n"


@SETTINGS
@given(headers(), st.sampled_from(["good", "short", "empty", "random", "long"]))
def test_read_record_on_any_header_text_gives_a_record_or_ecgmoe_error(text: str, dat: str
                                                                         ) -> None:
    rng = np.random.default_rng(0)
    data = {"good": rng.integers(-500, 500, 2000).astype("<i2").tobytes(),
            "short": b"\x01\x02\x03", "empty": b"",
            "random": rng.integers(0, 256, 4001, dtype=np.uint8).tobytes(),
            "long": rng.integers(-500, 500, 20000).astype("<i2").tobytes()}[dat]
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "rec.hea").write_text(text, encoding="utf-8", errors="surrogateescape")
        (Path(d) / "rec.dat").write_bytes(data)
        try:
            rec = read_record(Path(d) / "rec.hea")
        except EcgMoeError as e:
            assert "\n" not in str(e) and str(e)
            return
    sig = rec.signal
    assert sig.ndim == 2 and sig.dtype == np.float32 and sig.shape[1] >= 1
    assert sig.shape[0] == len(rec.lead_names) >= 1
    assert np.isfinite(rec.fs) and 0 < rec.fs <= 1e5


# ---- resampling and cleaning (signal/clean.py) --------------------------------------------

@SETTINGS
@given(signals(max_seconds=8.0), st.sampled_from([100.0, 250.0, 500.0]))
def test_resample_keeps_the_duration_and_stays_finite(case, fs_out: float) -> None:
    sig, fs = case
    x = np.nan_to_num(sig, nan=0.0, posinf=0.0)
    if x.shape[1] == 0:
        return
    y = resample_filter(x, fs, fs_out)
    assert y.dtype == np.float32 and y.shape[0] == x.shape[0] and np.isfinite(y).all()
    dur_in, dur_out = x.shape[1] / fs, y.shape[1] / fs_out
    assert abs(dur_out - dur_in) <= 0.01 * dur_in + 2 / fs_out, (dur_in, dur_out)


@SETTINGS
@given(st.floats(500.0, 2000.0), st.floats(0.6, 0.95), st.floats(0.5, 20.0))
def test_resample_removes_what_the_new_rate_cannot_hold(fs_in: float, where: float,
                                                        low_hz: float) -> None:
    """Anti-aliasing: a tone above the new Nyquist rate is gone; a slow one is kept."""
    fs_out = 250.0
    t = np.arange(int(fs_in * 8)) / fs_in
    high = fs_out / 2 + where * (min(fs_in / 2, 4 * fs_out) - fs_out / 2)
    y = resample_filter(np.vstack([np.sin(2 * np.pi * high * t), np.sin(2 * np.pi * low_hz * t)]),
                 fs_in, fs_out)
    core = y[:, y.shape[1] // 4: -y.shape[1] // 4]  # away from the edges
    assert np.abs(core[0]).max() < 0.2, f"{high:.1f} Hz tone aliased through at {fs_in:.1f} Hz"
    assert 0.9 < np.abs(core[1]).max() < 1.1


@SETTINGS
@given(signals(max_seconds=12.0), specs())
def test_clean_gives_finite_clipped_signal_and_aligned_masks(case, spec: PreprocessSpec) -> None:
    sig, fs = case
    if sig.shape[1] == 0 or not 1.0 <= fs:  # empty records never reach clean (prepare refuses)
        return
    x = sig.astype(np.float32)
    filled, long_gap = nan_repair(x, fs, spec.nan_interp_max_s)
    assert filled.shape == x.shape and long_gap.shape == x.shape and long_gap.dtype == bool
    finite = np.isfinite(x)
    assert np.isfinite(filled).all()
    np.testing.assert_array_equal(filled[finite], x[finite])
    assert not long_gap[finite].any()
    y, gaps, stuck = clean(x, fs, spec)
    assert y.dtype == np.float32 and np.isfinite(y).all()
    assert np.abs(y).max(initial=0) <= spec.clip_mv
    assert gaps.shape == y.shape == stuck.shape and gaps.dtype == stuck.dtype == bool
    assert not y[gaps].any(), "samples of long gaps are zeroed"


CSV_PIECES = ["I,II\n", "time,I,II\n", "1,2\n", "1;2;3\n", "0.1\t0.2\n", "nan,1\n", "a,b\n",
              "1e400,1\n", ",\n", "\n", "1,2,3\n", "\xff\xfe", "-,-\n", "inf,-inf\n"]


@SETTINGS
@given(st.lists(st.one_of(st.sampled_from(CSV_PIECES), st.text(max_size=12)), max_size=30),
       st.sampled_from([None, ["I"], ["I", "II"]]))
def test_read_record_on_any_csv_text_gives_a_record_or_ecgmoe_error(pieces: list[str],
                                                                   names: list[str] | None) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "rec.csv"
        path.write_bytes("".join(pieces).encode("utf-8", "surrogateescape"))
        try:
            rec = read_record(path, fs=250.0, lead_names=names)
        except EcgMoeError as e:
            assert "\n" not in str(e) and str(e)
            return
    assert rec.signal.ndim == 2 and rec.signal.dtype == np.float32
    assert rec.signal.shape[0] == len(rec.lead_names) >= 1 and rec.signal.shape[1] >= 1
