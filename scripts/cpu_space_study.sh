#!/usr/bin/env bash
# The CPU-space study (README, "A search space for CPUs"): every committed result of it, in order. Each step is
# resumable and reuses what is finished, so the script can be run again after an interruption.
#
#   bash scripts/cpu_space_study.sh            # about 1.5 h on a 2-core CPU
#
# 1. the int8 latency table of the CPU space (ONNX Runtime, one thread, 512x1024) and its held-out validation
# 2. the pipeline on the CPU space: search, teacher, student distilled, evaluation, export, report
# 3. the student trained with and without distillation, 3 seeds each
# 4. Fast-SCNN and LR-ASPP under the same budget, 3 seeds each (seed 0 is the committed peers run)
# 5. every network timed side by side, ONNX Runtime fp32 and int8, interleaved with the reference conv
# 6.-7. the class-map forms and the mIoU cost of other class decisions (below)
set -euo pipefail
cd "$(dirname "$0")/.."
fs=.venv/bin/fasterseg
table=data/latency/cpuspace_onnxruntime_int8_cpu1_512x1024.csv

[ -f "$table" ] || $fs latency build --config configs/cpu-space.yaml
$fs latency validate --config configs/cpu-space.yaml --out data/latency/validation/cpuspace-int8
$fs pipeline --config configs/cpu-space.yaml --out data/runs/cpu-space
$fs study distill --config configs/cpu-space.yaml --pipeline data/runs/cpu-space --seeds 0 1 2
$fs study peers --profile cpu --out data/runs/peers-cpu --seeds 0 1 2 --names fast_scnn lraspp_mobilenetv3_large
$fs bench networks --profile cpu --rounds 20 --no-search --out data/bench/networks-cpu-space.json \
    --only fast_scnn lraspp_mobilenetv3_large fasterseg_student cpu_student cpu_space_student \
    --arch cpu_student=data/runs/cpu-student/archs/student.json cpu_space_student=data/runs/cpu-space/archs/student.json
# 6. the same up to the class map (argmax included), with each network's own class decision and with nearest8 for all
for decision in own nearest8; do
    extra=(); [ "$decision" = own ] || extra=(--decision "$decision")
    suffix=$([ "$decision" = own ] && echo "" || echo "-$decision")
    $fs bench networks --profile cpu --rounds 20 --no-search --output classes --resolutions 512x1024 "${extra[@]}" \
        --only fast_scnn lraspp_mobilenetv3_large cpu_student cpu_space_student \
        --arch cpu_student=data/runs/cpu-student/archs/student.json cpu_space_student=data/runs/cpu-space/archs/student.json \
        --out "data/bench/networks-cpu-space-classes$suffix.json"
done
# 7. what another class decision costs in mIoU (needs the runs' weights, left by steps 3 and 4)
.venv/bin/python scripts/class_decisions.py
