"""`ecgmoe bench`: JSON schema, clear errors, FLOP counting, the timing loop, merged serving."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from fakes import TASK_NAMES, TINY_SPEC
from typer.testing import CliRunner

from ecgmoe_cli.bench.contenders import active_parameters, build_contenders, merged_single_task
from ecgmoe_cli.bench.inputs import synthetic_arrays, synthetic_batch
from ecgmoe_cli.bench.run import BenchOptions, run_bench
from ecgmoe_cli.bench.timing import NoMemory, WallClock, interleaved
from ecgmoe_cli.cli import app
from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.model.config import EcgMoeConfig, get_config
from ecgmoe_cli.model.ecgmoe import EcgMoe, count_parameters
from ecgmoe_cli.model.moe import DenseFFN, MoE
from ecgmoe_cli.model.summary import flops_per_record
from ecgmoe_cli.tasks import TASKS, get_task

runner = CliRunner()
FAST = ["--config", "tiny", "--batch-size", "1,3", "--repeats", "2", "--warmup", "1", "--quiet"]
ROW_KEYS = {"model", "batch_size", "tasks_served", "records_per_s", "latency_ms_p50",
            "latency_ms_p95", "peak_memory_mb", "working_memory_mb", "memory_kind",
            "parameters_total", "parameters_active_per_record", "flops_per_record",
            "flops_per_record_timed",
            "achieved_gflops", "fraction_of_matmul_peak", "trained", "ecgmoe_speedup"}


@pytest.mark.slow
def test_json_has_every_model_at_every_batch_size_and_matches_the_file(tmp_path) -> None:
    out = tmp_path / "sub" / "results.json"
    result = runner.invoke(app, ["bench", *FAST, "--tasks", "sex,rhythm,age", "--json",
                                 "-o", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data == json.loads(out.read_text())
    assert data["device"] == "cpu" and data["config"] == "tiny" and data["inputs"] == "synthetic"
    assert data["tasks"] == ["sex", "rhythm", "age"] and data["matmul_gflops"] > 0
    rows = data["results"]
    assert [(r["model"], r["batch_size"]) for r in rows] == [
        (m, b) for b in (1, 3) for m in ("ecgmoe", "per_task", "dense_multitask", "ecgmoe_merged")]
    for r in rows:
        assert set(r) == ROW_KEYS
        assert r["records_per_s"] > 0 and r["latency_ms_p95"] >= r["latency_ms_p50"] > 0
        assert r["records_per_s"] == pytest.approx(1000 * r["batch_size"] / r["latency_ms_p50"])
        assert r["flops_per_record"] > 0 and r["peak_memory_mb"] > 0
        assert 0 < r["parameters_active_per_record"] <= r["parameters_total"]
        assert r["trained"] is False  # no --weights: nothing here is trained
    by = {(r["model"], r["batch_size"]): r for r in rows}
    assert by["ecgmoe", 3]["ecgmoe_speedup"] == pytest.approx(1.0)
    assert by["per_task", 3]["ecgmoe_speedup"] == pytest.approx(
        by["ecgmoe", 3]["records_per_s"] / by["per_task", 3]["records_per_s"])
    assert by["ecgmoe_merged", 1]["tasks_served"] == 1 and by["per_task", 1]["tasks_served"] == 3
    assert data["accuracy"] == []  # no --data, no accuracy


def test_table_output_names_models_and_sizes() -> None:
    result = runner.invoke(app, ["bench", *FAST, "--tasks", "sex", "--models",
                                 "ecgmoe,dense_multitask"])
    assert result.exit_code == 0, result.output
    assert "dense_multitask" in result.output and "per_task" not in result.output
    assert "model sizes" in result.output and "matmul" in result.output


def test_cuda_unavailable_is_one_clear_line(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = runner.invoke(app, ["bench", "--device", "cuda", *FAST])
    assert result.exit_code == 1
    assert "CUDA is not available" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize("args, needle", [
    (["--batch-size", "0"], "--batch-size needs positive sizes"),
    (["--models", "ecgmoe,bogus"], "--models"),
    (["--dtype", "int8"], "--dtype 'int8' unknown"),
    (["--tasks", "nonsense"], "unknown task 'nonsense'"),
])
def test_bad_options_are_one_clear_line(args, needle) -> None:
    result = runner.invoke(app, ["bench", "--config", "tiny", "--quiet", *args])
    assert result.exit_code == 1 and needle in result.output, result.output


def test_moe_flops_count_only_the_routed_tokens() -> None:
    """FlopCounterMode on the MoE gives exactly router + k experts per valid token."""
    from torch.utils.flop_counter import FlopCounterMode

    d, E, k, h = 16, 6, 2, 24
    torch.manual_seed(0)
    moe, dense = MoE(d, E, k, h), DenseFFN(d, E * h)
    x, mask = torch.randn(3, 7, d), torch.rand(3, 7) > 0.4
    n = int(mask.sum())
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        moe(x, mask)
    assert fc.get_total_flops() == 2 * n * d * E + 2 * n * k * (2 * d * h)
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        dense(x, mask)
    assert fc.get_total_flops() == 2 * n * (2 * d * E * h)


def test_per_task_flops_are_tasks_times_one_backbone() -> None:
    cfg, tasks = get_config("tiny"), [get_task(t) for t in ("sex", "rhythm", "age", "potassium")]
    models = {c.name: c for c in build_contenders(["ecgmoe", "per_task", "dense_multitask"], cfg,
                                                  tasks)}
    batch = synthetic_batch(cfg, 4)
    f = {n: flops_per_record(c.module, batch, c.task_arg) for n, c in models.items()}
    backbone = flops_per_record(models["ecgmoe"].module, batch, [])
    assert f["per_task"] == pytest.approx(len(tasks) * backbone, rel=0.05)
    assert backbone < f["ecgmoe"] < 1.1 * backbone  # adapters + heads are cheap
    assert f["dense_multitask"] > backbone  # the dense FFN is n_experts / top_k times wider


def test_interleaved_rotates_warms_up_and_times_with_the_given_clock() -> None:
    calls: list[str] = []
    cost = {"a": 1.0, "b": 3.0}
    clock_now = [0.0]

    def now() -> float:
        return clock_now[0]

    def make(name: str):
        def fn() -> None:
            calls.append(name)
            clock_now[0] += cost[name]
        return fn

    out = interleaved({"a": make("a"), "b": make("b")}, warmup=2, repeats=3,
                      clock=WallClock(now), memory=NoMemory())
    assert calls == ["a", "b", "a", "b",  # warm-up, in order
                     "a", "b", "b", "a", "a", "b"]  # repeats: each starts from the next model
    assert out["a"].seconds == [1.0, 1.0, 1.0] and out["b"].seconds == [3.0, 3.0, 3.0]
    assert out["b"].percentile(50) == 3.0


def test_percentiles_come_from_the_repeats() -> None:
    seq = iter([0.0, 0.010, 0.0, 0.030, 0.0, 0.020, 0.0, 0.100])
    out = interleaved({"m": lambda: None}, warmup=0, repeats=4, clock=WallClock(lambda: next(seq)),
                      memory=NoMemory())
    assert out["m"].seconds == pytest.approx([0.01, 0.03, 0.02, 0.1])
    assert out["m"].percentile(50) == pytest.approx(0.025)
    assert out["m"].percentile(95) == pytest.approx(np.percentile([0.01, 0.03, 0.02, 0.1], 95))


def test_merged_single_task_model_matches_the_adapter_output() -> None:
    cfg = get_config("tiny")
    torch.manual_seed(0)
    model = EcgMoe(cfg, [TASKS["sex"], TASKS["arrhythmia"]]).eval()
    with torch.no_grad():  # non-zero adapters, or merging would prove nothing
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    model.heads["arrhythmia"].temperature = 1.7
    batch = synthetic_batch(cfg, 5)
    merged = merged_single_task(model, "arrhythmia")
    assert not merged.trainable_parameters("arrhythmia")[2:]  # only the head: no LoRA tensors
    want = model.predict(batch, ["arrhythmia"])["arrhythmia"]
    got = merged.predict(batch)["arrhythmia"]
    assert torch.allclose(got, want, atol=1e-5)
    with pytest.raises(EcgMoeError, match="no task 'age'"):
        merged_single_task(model, "age")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_autocast_gives_the_fp32_outputs(dtype: torch.dtype) -> None:
    """--dtype bf16/fp16 must run every layer (a -1e9 mask fill overflowed fp16) and agree."""
    cfg = get_config("tiny")
    torch.manual_seed(0)
    model = EcgMoe(cfg, [TASKS["sex"], TASKS["arrhythmia"], TASKS["age"]]).eval()
    batch = synthetic_batch(cfg, 6)
    assert (batch["rpeaks"] < 0).any()  # padded beats: the masked positions are exercised
    want = model.predict(batch)
    with torch.autocast("cpu", dtype=dtype):
        got = model.predict(batch)
    for name, w in want.items():
        g = got[name].float()
        assert torch.isfinite(g).all(), name
        assert torch.allclose(g, w, rtol=0.05, atol=0.05), (name, (g - w).abs().max())


def test_active_parameters_leave_out_unrouted_experts_and_the_ssl_decoder() -> None:
    cfg = get_config("tiny")
    model = EcgMoe(cfg, [TASKS["sex"]])
    moes = [m for m in model.modules() if isinstance(m, MoE)]
    experts = sum(p.numel() for m in moes for p in (m.w1, m.b1, m.w2, m.b2))
    ssl = count_parameters(model.ssl_decoder) + model.mask_token.numel()
    idle = experts * (cfg.n_experts - cfg.top_k) // cfg.n_experts
    assert active_parameters(model) == count_parameters(model) - idle - ssl


def test_synthetic_windows_beat_every_0_8_s() -> None:
    cfg = get_config("base")
    a = synthetic_arrays(cfg, 6, seed=1)
    fs = cfg.window_samples / 10.0
    assert a["signal"].shape == (6, 12, cfg.window_samples) and a["lead_mask"].all()
    for rp, rr in zip(a["rpeaks"], a["rr"]):
        beats = rp[rp >= 0]
        assert 11 <= len(beats) <= 14
        assert np.median(np.diff(beats)) / fs == pytest.approx(0.8, rel=0.12)
        assert np.allclose(rr[:len(beats), 0].mean(), 0.8, rtol=0.12)
        assert (rp[len(beats):] == -1).all()
    # the R-peaks stand out of the noise on every lead
    peak = a["signal"][0][:, a["rpeaks"][0][0]]
    assert (peak > 0.3).all()


def test_with_data_and_weights_only_trained_models_get_accuracy(tmp_path, tiny_dataset) -> None:
    from ecgmoe_cli.weights import store

    ds = tiny_dataset
    torch.manual_seed(0)
    model = EcgMoe(EcgMoeConfig.from_spec("tiny", TINY_SPEC), [get_task(t) for t in TASK_NAMES])
    store.save_model(model, TINY_SPEC, tmp_path / "w")
    result = run_bench(BenchOptions(batch_sizes=(2,), repeats=1, warmup=0, data=ds,
                                    weights=tmp_path / "w", probe_size=64))
    assert result["inputs"] == str(ds) and sorted(result["tasks"]) == sorted(TASK_NAMES)
    acc = {a["model"]: a for a in result["accuracy"]}
    assert acc["per_task"]["trained"] is False and acc["per_task"]["tasks"] is None
    assert acc["dense_multitask"]["tasks"] is None
    scores = acc["ecgmoe"]["tasks"]
    assert scores["sex"]["metric"] == "macro_auroc" and 0 <= scores["sex"]["value"] <= 1
    assert scores["arrhythmia"]["metric"] == "accuracy" and scores["rr_interval"]["metric"] == "mae"
    merged = acc["ecgmoe_merged"]["tasks"]
    (task,) = merged
    assert merged[task]["value"] == pytest.approx(scores[task]["value"], abs=1e-6)
    assert merged[task]["ecgmoe_advantage"]["value"] == pytest.approx(0, abs=1e-6)
    assert "ecgmoe_advantage" not in scores[task]
    assert {r["model"]: r["trained"] for r in result["results"]} == {
        "ecgmoe": True, "per_task": False, "dense_multitask": False, "ecgmoe_merged": True}


def _save_baselines(root, tasks) -> None:
    from ecgmoe_cli.model.baselines import PerTaskModels, dense_multitask
    from ecgmoe_cli.weights import store

    config = EcgMoeConfig.from_spec("tiny", TINY_SPEC)
    torch.manual_seed(1)
    store.save_model(dense_multitask(config, tasks).eval(), TINY_SPEC, root / "dense_multitask")
    for name, m in PerTaskModels.fresh(config, tasks).models.items():
        store.save_model(m.eval(), TINY_SPEC, root / "per_task" / name)


def test_baselines_with_weights_are_scored_like_ecgmoe(tmp_path, tiny_dataset) -> None:
    from ecgmoe_cli.bench.accuracy import predictions, score_contender
    from ecgmoe_cli.io.dataset import open_dataset
    from ecgmoe_cli.weights.store import load_model

    ds = tiny_dataset
    tasks = [get_task(t) for t in TASK_NAMES]
    _save_baselines(tmp_path / "b", tasks)
    result = run_bench(BenchOptions(batch_sizes=(2,), repeats=1, warmup=0, data=ds,
                                    config="tiny", tasks=TASK_NAMES, baselines=tmp_path / "b",
                                    probe_size=64,
                                    models=("per_task", "dense_multitask")))
    assert result["baselines"] == str(tmp_path / "b")
    acc = {a["model"]: a for a in result["accuracy"]}
    assert all(acc[m]["trained"] and set(acc[m]["tasks"]) == set(TASK_NAMES) for m in acc)
    # per_task's score for a task is that task's own saved model, scored on its own
    model, _, _ = load_model(tmp_path / "b" / "per_task" / "sex")
    (alone,) = build_contenders(["dense_multitask"], model.config, [get_task("sex")])
    alone.module, alone.trained, alone.task_arg = model, True, ["sex"]
    dsx = open_dataset(ds)
    rows = dsx.rows(fold=10)
    one = score_contender(alone, dsx, rows, predictions(alone, dsx, rows, torch.device("cpu"),
                                                        torch.float32))
    assert acc["per_task"]["tasks"]["sex"]["value"] == pytest.approx(
        one["tasks"]["sex"]["value"], abs=1e-6)


def test_bad_baselines_folder_is_one_clear_line(tmp_path) -> None:
    tasks = [get_task(t) for t in TASK_NAMES]
    _save_baselines(tmp_path / "b", tasks[:2])  # trained on two of the four tasks
    for folder, needle in [(tmp_path / "b", "no adapter for tasks ['arrhythmia', 'rhythm']"),
                           (tmp_path / "b", "no per_task model for ['arrhythmia', 'rhythm']"),
                           (tmp_path, "holds neither dense_multitask/ nor per_task/")]:
        result = runner.invoke(app, ["bench", *FAST, "--baselines", str(folder),
                                     "--tasks", ",".join(TASK_NAMES)])
        assert result.exit_code == 1 and needle in result.output, result.output
        assert "Traceback" not in result.output and str(folder) in result.output
        shutil.rmtree(tmp_path / "b" / "dense_multitask", ignore_errors=True)


def test_table_says_untrained_instead_of_a_score(tiny_dataset) -> None:
    ds = tiny_dataset
    result = runner.invoke(app, ["bench", "--data", str(ds), "--config", "tiny", "--batch-size",
                                 "2", "--repeats", "1", "--warmup", "0", "--quiet",
                                 "--models", "ecgmoe,dense_multitask"])
    assert result.exit_code == 0, result.output
    assert "test fold 10" in result.output and result.output.count("untrained") >= 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_bf16_run() -> None:
    result = run_bench(BenchOptions(device="cuda", config="tiny", batch_sizes=(4,), repeats=2,
                                    warmup=1, dtype="bf16", tasks=("sex", "rhythm")))
    assert result["device"].startswith("cuda")
    assert all(r["memory_kind"] == "cuda_allocated" and r["records_per_s"] > 0
               for r in result["results"])


def test_cuda_clock_synchronises_before_and_reads_events_after(monkeypatch) -> None:
    """The order a correct CUDA timing needs, checked with a fake torch.cuda (no GPU here)."""
    from ecgmoe_cli.bench.timing import CudaClock, CudaMemory

    log: list[str] = []

    class FakeEvent:
        def __init__(self, enable_timing: bool) -> None:
            assert enable_timing
            self.name = "start" if not any(e.startswith("new") for e in log) else "end"
            log.append(f"new {self.name}")

        def record(self) -> None:
            log.append(f"record {self.name}")

        def synchronize(self) -> None:
            log.append(f"sync {self.name}")

        def elapsed_time(self, other: FakeEvent) -> float:
            log.append("elapsed")
            return 12.5  # milliseconds, as CUDA reports them

    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: log.append("device sync"))
    seconds = CudaClock(torch.device("cuda")).measure(lambda: log.append("work"))
    assert seconds == pytest.approx(0.0125)
    assert log == ["device sync", "new start", "new end", "record start", "work", "record end",
                   "sync end", "elapsed"]
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda d: log.append("reset"))
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda d: 100)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda d: 250)
    mem = CudaMemory(torch.device("cuda"))
    assert mem.start() == 100 and log[-1] == "reset" and mem.peak() == 250


def test_advantage_is_paired_and_signed_by_metric() -> None:
    from ecgmoe_cli.bench.accuracy import advantage

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400).astype(float)
    good = y * 0.6 + rng.random(400) * 0.5  # separates the classes better
    bad = y * 0.1 + rng.random(400) * 0.5
    sex = get_task("sex")
    a = advantage(sex, good[:, None], bad[:, None], y[:, None])
    assert a["value"] > 0 and 0 < a["ci95"][0] <= a["value"] <= a["ci95"][1]
    same = advantage(sex, good[:, None], good[:, None], y[:, None])
    assert same["value"] == 0 and same["ci95"] == [0, 0]  # paired: identical models never differ
    age, truth = get_task("age"), rng.normal(60, 10, 400)
    closer = advantage(age, truth + rng.normal(0, 1, 400), truth + rng.normal(0, 5, 400), truth)
    assert closer["value"] > 0 and closer["ci95"][0] > 0  # lower MAE counts as an advantage
