"""`ecgmoe bench` core: ECG-MoE against per-task and dense multi-task baselines, in one process.

- `inputs`: the batch every contender sees (synthetic 12-lead windows or dataset rows);
- `contenders`: the models compared, their parameters (total / active) and FLOPs per record;
- `timing`: interleaved warm-up + repeats with a CPU or CUDA clock, peak memory, matmul probe,
  autocast;
- `run`: `run_bench(BenchOptions) -> dict` (the JSON `--json` prints);
- `accuracy`: each trained model's headline metric on fold 10, ecgmoe's advantage with a CI.
"""
