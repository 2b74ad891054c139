"""The ordered process-pool map under preprocess and predict."""

from __future__ import annotations

import os
import time

from ecgmoe_cli.parallel import HeadStart, ordered_map, worker_state


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


def _slow_value(x: int) -> tuple[int, int]:
    if x == worker_state().get("die_at"):
        os._exit(3)  # a worker killed half-way (out of memory, kill -9)
    time.sleep(0.01)
    return os.getpid(), x * worker_state()["k"]


def test_head_start_gives_an_ordered_prefix_from_another_process() -> None:
    head = HeadStart(_slow_value, list(range(1000)), {"k": 2})
    time.sleep(0.3)  # the caller's own work (loading the model)
    got = head.stop()
    assert 0 < len(got) < 1000  # stopped early: a prefix, not the whole list
    assert [v for _, v in got] == [2 * x for x in range(len(got))]
    assert {p for p, _ in got} != {os.getpid()}
    done = HeadStart(_slow_value, [1, 2, 3], {"k": 1})
    time.sleep(0.5)
    assert [v for _, v in done.stop()] == [1, 2, 3]  # finished before it was stopped


def test_head_start_survives_its_worker_dying_and_cancel_stops_it() -> None:
    head = HeadStart(_slow_value, list(range(100)), {"k": 1, "die_at": 5})
    time.sleep(0.5)
    assert [v for _, v in head.stop()] == [0, 1, 2, 3, 4]  # what arrived before the death
    head = HeadStart(_slow_value, list(range(10_000)), {"k": 1})
    head.cancel()
    assert not head._proc.is_alive()


def test_taper_splits_only_the_last_chunks_and_keeps_every_item() -> None:
    from ecgmoe_cli.parallel import _chunked

    items = list(range(2000))
    sizes = [len(c) for c in _chunked(items, 64, 2 * 64)]
    assert sizes[:29] == [64] * 29 and set(sizes[29:]) == {16} and sum(sizes) == 2000
    assert [x for c in _chunked(items, 64, 2 * 64) for x in c] == items
    assert [len(c) for c in _chunked(items[:100], 64, 0)] == [64, 36]
    assert sum(len(c) for c in _chunked(items[:50], 64, 128)) == 50  # all of it is tail
    got = list(ordered_map(_pid_and_value, items[:300], workers=2, chunk=16, state={"k": 1},
                           taper=True))
    assert [v for _, v in got] == items[:300]
