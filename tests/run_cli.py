"""Run `ecgmoe` as a user does: in this process (typer's CliRunner), or in a subprocess with
real exit codes, signals and peak memory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

ENV = {**os.environ, "COLUMNS": "300", "PYTHONWARNINGS": "ignore"}


def invoke(*args: object) -> tuple[int, str, str]:
    """`ecgmoe ARGS` in this process: (exit code, stdout, stderr); an escaped exception fails."""
    from typer.testing import CliRunner

    from ecgmoe_cli.cli import app

    r = CliRunner().invoke(app, [str(a) for a in args])
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exc_info
    return r.exit_code, r.stdout, r.stderr


def one_line_error(code: int, err: str, *needles: str) -> None:
    """Exit code 1 and one stderr line, no traceback, naming every needle."""
    assert code == 1, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err


def ecgmoe(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ecgmoe_cli", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=ENV,
                          check=False)


def default_sigint() -> None:
    """In a child before exec: SIGINT as a terminal delivers it. A suite started in the
    background (`make test &`, nohup) inherits SIGINT ignored, and so would the CLI under test."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def interrupt(args: list[str], ready: Callable[[], bool], sig: int, delay: float = 0.3,
              timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Start `ecgmoe ARGS`, wait until `ready()`, then send `sig`; fail if it finished first."""
    cmd = [sys.executable, "-m", "ecgmoe_cli", *map(str, args)]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
                         preexec_fn=default_sigint)
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


def peak_mb(*args: object) -> int:
    """Peak RSS (MB) of `ecgmoe ARGS` (its own process or its largest worker); asserts exit 0.

    wait4 reports the peak of the process and of its reaped children (the CLI leaves through
    os._exit, so it cannot report on itself)."""
    import tempfile

    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        p = subprocess.Popen([sys.executable, "-m", "ecgmoe_cli", *map(str, args)],
                             stdout=out, stderr=err, env=ENV)
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        err.seek(0)
        assert p.returncode == 0, err.read()[-800:]
    return usage.ru_maxrss // 1024
