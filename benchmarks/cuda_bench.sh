#!/usr/bin/env bash
# The CUDA figures of BENCHMARKS.md in one command (a lent GPU is held for minutes, not hours):
#
#     bash benchmarks/cuda_bench.sh OUT_DIR [TEST_DATASET]
#
# Writes under OUT_DIR: bench JSON for fp32 / bf16 / fp16 (synthetic windows, shipped weights,
# batch 1-1024), bf16 with torch.compile, ecgmoe's accuracy per dtype on TEST_DATASET (any
# `ecgmoe preprocess` output, or a part small enough to carry from benchmarks/test_subset.py;
# its fold-10 windows), `predict` on 2,000 simulated records on the GPU and on the CPU cores
# beside it, and a small train / resume / finetune / evaluate on the GPU. Every step has a time limit, so one slow step does
# not cost the others. ECGMOE says how to call the CLI (default: python3 -m ecgmoe_cli);
# DEVICE (default cuda) lets the script be tried on a CPU-only machine first; PART=train runs
# only the tests and the training steps (for a lease too short for the whole script).
set -u
out=${1:?usage: cuda_bench.sh OUT_DIR [TEST_DATASET]}
data=${2:-}
E=${ECGMOE:-python3 -m ecgmoe_cli}
dev=${DEVICE:-cuda}
sizes=${SIZES:-1,8,64,256,1024}
part=${PART:-all}
mkdir -p "$out"
work=$(mktemp -d)

step() {  # step LIMIT_S NAME COMMAND...: run with a limit, print its wall time
    local limit=$1 name=$2
    shift 2
    echo "== $name"
    local t0
    t0=$(date +%s%N)
    timeout "$limit" "$@"
    local rc=$?
    echo "== $name: rc $rc, $(( ($(date +%s%N) - t0) / 1000000 )) ms"
}

command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total \
    --format=csv,noheader
python3 -c "import torch, platform; print('torch', torch.__version__, 'python',
platform.python_version(), torch.cuda.get_device_name() if torch.cuda.is_available() else '')"

step 120 "tests needing CUDA" python3 -m pytest -q -p no:cacheprovider tests/test_bench.py -k cuda
if [ "$part" = all ]; then
for dtype in fp32 bf16 fp16; do
    step 150 "bench $dtype" $E bench --device "$dev" --batch-size "$sizes" --weights weights \
        --dtype "$dtype" --repeats 20 --warmup 3 --quiet -o "$out/bench-$dtype.json"
done
if [ -n "$data" ]; then
    for dtype in fp32 bf16 fp16; do
        step 90 "accuracy $dtype" $E bench --device "$dev" --data "$data" --weights weights \
            --models ecgmoe --batch-size 64 --dtype "$dtype" --repeats 3 --warmup 1 --quiet \
            -o "$out/accuracy-$dtype.json"
    done
fi
fi
step 60 "simulate 2,000 records" $E simulate "$work/sim" -n 2000 --fs 500 --duration 10 \
    --seed 0 --quiet
[ "$part" = all ] && for device in "$dev" cpu; do
    step 120 "predict 2,000 records, --device $device" $E predict "$work/sim" \
        -o "$work/p-$device.parquet" --device "$device" --quiet --json
done
[ "$part" = all ] && step 60 "predict examples, --device $dev" $E predict examples/records \
    -o "$out/examples-$dev.parquet" --device "$dev" --quiet
# training on the device, small (tiny config, 1 epoch): that the path runs and resumes
step 60 "preprocess 2,000 records" $E preprocess "$work/sim" -o "$work/ds" --quiet
step 120 "train --device $dev" $E train "$work/ds" -o "$work/run" --config tiny --epochs 1 \
    --device "$dev" --quiet --json
step 60 "train --resume (one more epoch)" $E train "$work/ds" -o "$work/run" --config tiny \
    --epochs 2 --device "$dev" --resume --quiet
step 90 "finetune --device $dev" $E finetune --task sex --task rhythm --data "$work/ds" \
    --backbone "$work/run/weights" --epochs 2 --device "$dev" --quiet
step 60 "evaluate" $E evaluate "$work/ds" --weights "$work/run/weights" --tasks sex --tasks rhythm \
    --device "$dev" --json
step 150 "train --config base, 1 epoch" $E train "$work/ds" -o "$work/run-base" --epochs 1 \
    --device "$dev" --quiet --json
[ "$part" = all ] && step 240 "bench bf16 --compile" $E bench --device "$dev" --batch-size 64,1024 --weights weights \
    --dtype bf16 --compile --models ecgmoe,dense_multitask --repeats 20 --warmup 3 --quiet \
    -o "$out/bench-bf16-compile.json"

python3 - "$out" <<'EOF'
import json, pathlib, sys
for f in sorted(pathlib.Path(sys.argv[1]).glob("*.json")):
    r = json.loads(f.read_text())
    print(f"{f.name}: {r['device_name']}, probe {r['matmul_gflops']:.0f} GFLOP/s")
    for x in r["results"]:
        print(f"  {x['model']:16s} bs {x['batch_size']:5d} {x['records_per_s']:10.1f} rec/s "
              f"x{x.get('ecgmoe_speedup') or 0:5.2f} p50 {x['latency_ms_p50']:8.2f} ms "
              f"mem {x['peak_memory_mb']:8.1f} MB")
    for a in r.get("accuracy", []):
        if a["trained"]:
            print("  " + ", ".join(f"{t} {v['value']:.4f}" for t, v in a["tasks"].items()))
EOF
rm -rf "$work"
