#!/usr/bin/env bash
# Every GPU figure of issue 31 in one device call (about 8 minutes on an H200), from the project
# root, with ../shared/gpu-kit's packages and 100-px Flowers copy:
#   bash ../shared/gpu-kit/prepare.sh                                   # here: builds .gpu/
#   run command="bash .gpu/run.sh bash benchmarks/gpu_check.sh" carry=[".gpu"] timeout_s=560
# 1. the CUDA-graph check (eager and graphed losses agree, the learning rate follows the
#    schedule) and images/s eager / graphed / torch.compile: benchmarks/cuda_graph.py;
# 2. epoch time, TFLOP/s and GPU busy share per size, eager then graphed, and 1/2/4 trials per
#    GPU: benchmarks/gpu.py;
# 3. `--time-budget 5` graphed where the check passed, eager where not: plan vs run, GPU busy,
#    test accuracy: benchmarks/gpu_search.py.
# Every output lands in $OUT (the device tool brings it back) and on stdout.
set -uo pipefail
DATA=${DATA:-/tmp/flowers/flower_photos}
OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
python3 benchmarks/cuda_graph.py --data-dir "$DATA" --size 64 --steps 400 | tee "$OUT/cuda_graph.json"
graphs=$([ "${PIPESTATUS[0]}" = 0 ] && echo 1 || echo 0)
python3 benchmarks/gpu.py --data-dir "$DATA" --sizes 64,96 --epochs 5 --trials 1 | tee "$OUT/gpu_eager.md"
HYPERTUNE_CUDA_GRAPH=1 python3 benchmarks/gpu.py --data-dir "$DATA" --sizes 64,96 --epochs 5 \
    --trials 1,2,4 | tee "$OUT/gpu_graphed.md"
HYPERTUNE_CUDA_GRAPH=$graphs python3 benchmarks/gpu_search.py --data-dir "$DATA" --minutes 5 \
    | tee "$OUT/search.txt"
