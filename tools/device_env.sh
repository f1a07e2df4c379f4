# Sourced by the device scripts (device_bench.sh, device_results.sh) with $default_out set:
# $out (from $OUT, else $default_out; created), $python (from $PYTHON, else python3), and the
# import path: the checkout itself (the tools import the fsr_jax and configs packages, which are
# not pip-installed there), then the wheels in .whl/ (installed into /tmp/site) for the packages
# the device image lacks.
out=${OUT:-$default_out}
mkdir -p "$out"
python=${PYTHON:-python3}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
if compgen -G ".whl/*.whl" > /dev/null; then
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PYTHONPATH
fi
