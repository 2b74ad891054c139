"""The ordered process-pool map under preprocess and predict."""

from __future__ import annotations

import os
import time
from pathlib import Path

from ecgmoe_cli.pipeline.parallel import Prefetch, ordered_map, worker_state


def _pid_and_value(x: int) -> tuple[int, int]:
    return os.getpid(), x * worker_state()["k"]


def test_results_keep_input_order_in_or_out_of_process() -> None:
    items = list(range(50))
    inline = list(ordered_map(_pid_and_value, items, workers=1, chunk=4, state={"k": 3}))
    assert [v for _, v in inline] == [3 * x for x in items]
    assert {p for p, _ in inline} == {os.getpid()}  # --workers 1: the calling process
    pooled = list(ordered_map(_pid_and_value, items, workers=1, chunk=4, state={"k": 3},
                              pool=True))
    assert [v for _, v in pooled] == [3 * x for x in items]
    assert os.getpid() not in {p for p, _ in pooled}  # one reader process beside the model
    two = list(ordered_map(_pid_and_value, items, workers=2, chunk=4, state={"k": 3}))
    assert [v for _, v in two] == [3 * x for x in items]


def _until_budget(x: int) -> tuple[int, int] | None:
    st = worker_state()
    if x >= st["budget"]:
        Path(st["marker"]).touch()
        return None
    return os.getpid(), x * st["k"]


def test_prefetch_returns_a_prefix_in_order_from_another_process(tmp_path: Path) -> None:
    """Prefetch works while the caller is busy; `take` returns what is done, in order: all of
    it once fn said stop (None), a prefix (maybe empty) when taken at once."""
    marker = tmp_path / "spent"
    early = Prefetch(_until_budget, list(range(100)),
                     state={"k": 3, "budget": 7, "marker": str(marker)})
    deadline = time.monotonic() + 30
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    got = early.take()
    assert [v for _, v in got] == [3 * x for x in range(7)]
    assert os.getpid() not in {p for p, _ in got}

    hurried = Prefetch(_until_budget, list(range(10_000)),
                       state={"k": 3, "budget": 10_000, "marker": str(marker)}).take()
    assert [v for _, v in hurried] == [3 * x for x in range(len(hurried))]


def _megabyte(x: int) -> bytes:
    return bytes(1 << 20)


def test_closing_a_prefetch_ends_its_worker_at_once() -> None:
    """Ctrl-C while the model loads: the worker, holding more results than a pipe buffers, must
    not keep the command waiting."""
    early = Prefetch(_megabyte, list(range(50)))
    time.sleep(0.5)
    t0 = time.monotonic()
    early.close()
    assert time.monotonic() - t0 < 2.0
    assert not early._proc.is_alive()


def test_a_long_record_keeps_its_samples_within_a_process_but_not_through_a_pipe() -> None:
    """Long carries the Record read to find it long, so its consumer in the same process does
    not read the file again; pickled (a worker's result), it carries only the path: pending
    results must not hold whole Holter recordings."""
    import pickle
    from pathlib import Path

    import numpy as np

    from ecgmoe_cli.io.records.record import Record
    from ecgmoe_cli.pipeline.outcomes import Long

    record = Record("h.hea", "h", np.zeros((2, 10), np.float32), 1.0, ["II", "V1"])
    long = Long(Path("h.hea"), record)
    assert long.record is record
    back = pickle.loads(pickle.dumps(long))
    assert back == Long(Path("h.hea")) and back.record is None
