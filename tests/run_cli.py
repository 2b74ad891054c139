"""Run `ecgmoe` as a user does: a subprocess, with real exit codes, signals and peak memory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

ENV = {**os.environ, "COLUMNS": "300", "PYTHONWARNINGS": "ignore"}


def ecgmoe(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ecgmoe_cli", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=ENV,
                          check=False)


def interrupt(args: list[str], ready: Callable[[], bool], sig: int, delay: float = 0.3,
              timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Start `ecgmoe ARGS`, wait until `ready()`, then send `sig`; fail if it finished first."""
    cmd = [sys.executable, "-m", "ecgmoe_cli", *map(str, args)]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    end = time.monotonic() + timeout
    while not ready():
        if p.poll() is not None:
            out, err = p.communicate()
            pytest.fail(f"finished (rc {p.returncode}) before the signal: {err[-500:]}")
        if time.monotonic() > end:
            p.kill()
            pytest.fail("never reached the point of interruption")
        time.sleep(0.02)
    time.sleep(delay)
    p.send_signal(sig)
    out, err = p.communicate(timeout=60)
    assert p.returncode != 0, f"finished before the signal arrived: {err[-300:]}"
    return subprocess.CompletedProcess(cmd, p.returncode, out, err)


def assert_interrupted_cleanly(r: subprocess.CompletedProcess[str], sig: int) -> None:
    if sig == signal.SIGKILL:
        assert r.returncode == -signal.SIGKILL
    else:
        assert r.returncode == 130, r.stderr[-500:]
        assert "Traceback" not in r.stderr and "interrupted" in r.stderr


_PEAK = """
import resource, runpy, sys
sys.argv = ["ecgmoe", *sys.argv[1:]]
try:
    runpy.run_module("ecgmoe_cli", run_name="__main__")
except SystemExit as e:
    code = e.code
else:
    code = 0
print("PEAK_MB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
      resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024, code)
"""


def peak_mb(*args: object) -> int:
    """Peak RSS (MB) of `ecgmoe ARGS` (its own process or its largest worker); asserts exit 0."""
    r = subprocess.run([sys.executable, "-c", _PEAK, *map(str, args)], capture_output=True,
                       text=True, timeout=300, env=ENV, check=False)
    line = next((ln for ln in r.stdout.splitlines() if ln.startswith("PEAK_MB")), None)
    assert line is not None, r.stderr[-800:]
    _, own, children, code = line.split()
    assert code in ("0", "None"), r.stderr[-800:]
    return max(int(own), int(children))
