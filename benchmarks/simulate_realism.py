"""Synthetic normal ECGs vs real normal sinus rhythm records: heart rate, QRS amplitude, spectrum.

    .venv/bin/python benchmarks/simulate_realism.py [--real ../shared/ecg-real] [--n 200]
        [--png docs/img/simulate_realism.png]

Real: every 12-lead 500 Hz record of records.csv labelled NSR and nothing else (CinC 2021).
Synthetic: `ecgmoe simulate` normals (no finding, normal potassium) with the recording
artefacts, seed 1. Prints a Markdown table and writes a figure (median spectra and per-lead QRS
amplitudes). Both sides go through the same measurement: 0.5-40 Hz band-pass for amplitudes,
the project's R-peak detector for heart rate, Welch spectra of the raw signal.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from scipy.signal import butter, sosfiltfilt, welch

from ecgmoe_cli.signal.rpeaks import detect_rpeaks
from ecgmoe_cli.simulate.diagnosis import Diagnosis, draw_diagnosis
from ecgmoe_cli.simulate.dipole import LEADS
from ecgmoe_cli.simulate.synthetic import synthesize

FS = 500.0
BANDS = [(0.0, 0.5), (0.5, 5.0), (5.0, 15.0), (15.0, 40.0), (40.0, 100.0)]


def real_normals(root: Path) -> list[np.ndarray]:
    """(12, n) mV signals of the NSR-only 12-lead 500 Hz records (names printed)."""
    import wfdb

    out = []
    with open(root / "records.csv", newline="") as f:
        for row in csv.DictReader(f):
            codes = [c for c in row["labels"].split(";")[1:] if c.strip()]
            normal = len(codes) == 1 and "NSR" in codes[0]
            if row["fs"] == "500" and row["n_sig"] == "12" and normal:
                rec = wfdb.rdrecord(str(root / row["record"]))
                out.append(np.nan_to_num(rec.p_signal.T))
                print(row["record"], end=" ")
    return out


def synthetic_normals(n: int) -> list[np.ndarray]:
    out = []
    for i in range(n):
        drawn = draw_diagnosis(np.random.default_rng([1, i]))
        dx = Diagnosis(age=drawn.age, female=drawn.female)
        out.append(synthesize(1, i, FS, 10.0, dx=dx).signal)
    return out


def measure(sig: np.ndarray) -> dict[str, np.ndarray | float]:
    """Heart rate, per-lead median QRS peak-to-peak (mV), normalised spectrum and band shares."""
    sos = butter(2, [0.5, 40.0], btype="band", fs=FS, output="sos")
    clean = sosfiltfilt(sos, sig, axis=1)
    r = detect_rpeaks(clean, FS)
    w = int(0.06 * FS)
    r_in = r[(r > w) & (r < sig.shape[1] - w)]
    qrs = np.array([np.median([np.ptp(clean[lead, i - w: i + w]) for i in r_in])
                    if r_in.size else np.nan for lead in range(12)])
    # Net QRS area (R +-50 ms) in I and aVF above the PR-segment level (R -70..-50 ms).
    pr, h = int(0.07 * FS), int(0.05 * FS)
    r2 = r[(r > pr) & (r < sig.shape[1] - w)]
    net = [float(np.median([clean[lead, i - h: i + h].sum()
                            - 2 * h * clean[lead, i - pr: i - h].mean() for i in r2]))
           if r2.size else np.nan for lead in (0, 5)]
    axis = float(np.degrees(np.arctan2(net[1], net[0])))
    f, p = welch(sig - sig.mean(axis=1, keepdims=True), fs=FS, nperseg=1024, axis=1)
    p = p.mean(axis=0)
    p = p / p.sum()
    bands = np.array([p[(f >= lo) & (f < hi)].sum() for lo, hi in BANDS])
    hr = 60.0 * FS / float(np.median(np.diff(r))) if r.size > 2 else np.nan
    return {"hr": hr, "axis": axis, "qrs": qrs, "f": f, "psd": p, "bands": bands}


def _q(values: np.ndarray) -> str:
    lo, med, hi = np.nanpercentile(values, [25, 50, 75])
    return f"{med:.2f} ({lo:.2f}-{hi:.2f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--real", type=Path,
                    default=Path(__file__).resolve().parents[2] / "shared" / "ecg-real")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--png", type=Path, default=Path("docs/img/simulate_realism.png"))
    a = ap.parse_args()
    real = [measure(x) for x in real_normals(a.real)]
    syn = [measure(x) for x in synthetic_normals(a.n)]
    print(f"\nreal NSR records: {len(real)}; synthetic normals: {len(syn)}\n")
    print("| measure | real NSR, median (IQR) | synthetic normal, median (IQR) |\n|---|---|---|")
    print(f"| heart rate, bpm | {_q(np.array([m['hr'] for m in real]))} | "
          f"{_q(np.array([m['hr'] for m in syn]))} |")
    print("| frontal QRS axis (net area I, aVF), deg | "
          f"{_q(np.array([m['axis'] for m in real]))} | "
          f"{_q(np.array([m['axis'] for m in syn]))} |")
    for j, lead in enumerate(LEADS):
        print(f"| QRS peak-to-peak {lead}, mV | {_q(np.array([m['qrs'][j] for m in real]))} | "
              f"{_q(np.array([m['qrs'][j] for m in syn]))} |")
    for k, (lo, hi) in enumerate(BANDS):
        print(f"| power share {lo:g}-{hi:g} Hz, % | "
              f"{_q(100 * np.array([m['bands'][k] for m in real]))} | "
              f"{_q(100 * np.array([m['bands'][k] for m in syn]))} |")
    _figure(real, syn, a.png)
    print(f"\nfigure: {a.png}")


def _figure(real: list[dict], syn: list[dict], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
    f = real[0]["f"]
    for group, name, colour in ((real, "real NSR", "C0"), (syn, "synthetic normal", "C1")):
        psd = np.array([m["psd"] for m in group])
        lo, med, hi = np.percentile(psd, [25, 50, 75], axis=0)
        ax1.semilogy(f, med, color=colour, label=f"{name} (n={len(group)})")
        ax1.fill_between(f, lo, hi, color=colour, alpha=0.2)
        qrs = np.array([m["qrs"] for m in group])
        x = np.arange(12) + (-0.2 if group is real else 0.2)
        ax2.boxplot(qrs, positions=x, widths=0.35, showfliers=False, patch_artist=True,
                    boxprops={"facecolor": colour, "alpha": 0.5}, medianprops={"color": "k"})
    ax1.set(xlim=(0, 100), ylim=(1e-7, 1), xlabel="Hz", ylabel="share of power per bin",
            title="Power spectrum (12-lead mean; median, IQR)")
    ax1.legend()
    ax2.set_xticks(np.arange(12), LEADS)
    ax2.set(ylabel="mV", title="QRS peak-to-peak per lead (blue real, orange synthetic)")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    tmp = png.with_name(png.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    tmp.replace(png)


if __name__ == "__main__":
    main()
