#!/usr/bin/env bash
# The device run: fsr_jax's and the PyTorch reference's figures side by side, in one process
# (`tools/benchmark.py compare`). Run from the repository root on the GPU machine, carrying
# .whl (the wheels of ../shared/bench/device_wheels.sh, for the packages its image lacks) and
# bench/ (torch_ref.py, copied from ../shared/bench):
#
#   bash tools/device_bench.sh             # the device run: about 8 minutes on one H100
#   bash tools/device_bench.sh --small     # the rehearsal of the same steps on a CPU
#
# Extra arguments go to `compare` (its absl flags, e.g. --dtypes bfloat16 --budget_s 290
# --notorch_compile). Writes $OUT/compare.json (rewritten after every measurement, so a run
# cut off by the time limit keeps what it measured) and $OUT/compare.log (progress, then the
# same JSON). OUT defaults to runs/device_bench; BENCH_LIMIT_S (default 480) bounds the
# benchmark, PYTHON (default python3) runs it.
# With bench/faces/HR and bench/faces/LR (real faces copied there), it first checks the device
# Canny against cv2.Canny on this device (tools/canny_agreement.py -> $OUT/canny_agreement.json).
set -euo pipefail
default_out=runs/device_bench
# shellcheck source=tools/device_env.sh
source "$(dirname "$0")/device_env.sh"

if [ -d bench/faces/HR ] && [ -d bench/faces/LR ]; then
  "$python" tools/canny_agreement.py --hr_dir bench/faces/HR --lr_dir bench/faces/LR \
    --output "$out/canny_agreement.json" > /dev/null || echo "device_bench: canny_agreement failed" >&2
fi

# SIGINT at the limit: Python stops with KeyboardInterrupt, which also ends a PyTorch subprocess.
status=0
timeout -s INT -k 30 "${BENCH_LIMIT_S:-480}" \
  "$python" tools/benchmark.py compare --output "$out/compare.json" "$@" 2>&1 | tee "$out/compare.log" \
  || status=$?
echo "device_bench: compare exited with status $status; results in $out/compare.json" >&2
exit "$status"
