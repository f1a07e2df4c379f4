#!/usr/bin/env bash
# The results run on the GPU machine: the paper's recipe on real faces, trained and exported in one
# call (`tools/device_results.py train`). Run from the repository root, carrying .whl (the wheels of
# ../shared/bench/device_wheels.sh, for the packages the image lacks) and bench/faces (the shared
# faces: train/HIGH, train/LOW, test/celeba/HR, test/widerface/LR):
#
#   bash tools/device_results.sh             # the device run: about 8 minutes on one H200
#   bash tools/device_results.sh --small     # the rehearsal of the same steps on a CPU
#
# Extra arguments go to `train` (e.g. --budget_s 420). Writes at most 8 files of at most 16 MiB to
# $OUT (default runs/device_results): results.json, tnet.msgpack, snet.msgpack, stage1.tar,
# stage2.tar, variants.tar and run.log; each as soon as its step is done. RESULTS_LIMIT_S (default
# 510) is the hard limit: at it the run gets SIGINT, saves a checkpoint, exports what it has and
# stops (30 s later it is killed). PYTHON (default python3) runs it.
# Then, on the machine with the metric weights: python tools/device_results.py report --parts $OUT ...
set -euo pipefail
default_out=runs/device_results
# shellcheck source=tools/device_env.sh
source "$(dirname "$0")/device_env.sh"

status=0
timeout -s INT -k 30 "${RESULTS_LIMIT_S:-510}" \
  "$python" tools/device_results.py train --faces bench/faces --output "$out" "$@" 2>&1 | tee "$out/run.log" \
  || status=$?
echo "device_results: exited with status $status; results in $out" >&2
exit "$status"
