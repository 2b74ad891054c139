"""The ordered process-pool map under preprocess and predict."""

from __future__ import annotations

import os

from ecgmoe_cli.parallel import ordered_map, worker_state


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
