#!/usr/bin/env bash
# One call on the lent GPU machine: prefkit against TRL, DPO and KTO, everything written to $OUT.
#
#   bash bench/gpu_run.sh fetch   # here, once: the wheels the GPU machine lacks, into .whl/ (git-ignored)
#   bash bench/gpu_run.sh         # there: install what is missing from .whl/, then bench/train_gpu.py
#   DEVICE=cpu SHAPE=tiny STEPS=8 TIMEOUT=300 BUDGET=900 PYTHON=.venv/bin/python OUT=$(mktemp -d) \
#       bash bench/gpu_run.sh     # the same end to end on a CPU (a smoke run)
#
# The trainers run one by one, most wanted first (TRL DPO, prefkit DPO, TRL KTO, prefkit KTO, TRL DPO
# with its defaults), each in its own process under TIMEOUT seconds, all of them under BUDGET: a run that
# fails or overruns is recorded as such and the next still runs. The JSON is rewritten after each run.
# $OUT gets: gpu_run.log (this script's whole output), train_gpu-<device>-<date>.json, and
# worker-logs.tar.gz (each trainer's output and profile table) — three files, inside the tool's limits.
# Extra arguments go to bench/train_gpu.py after the defaults (so they win): e.g. --repeats 2.
set -uo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
WHEELS=${WHEELS:-.whl}
DEVICE=${DEVICE:-cuda}
SHAPE=${SHAPE:-1b}
STEPS=${STEPS:-20}
TIMEOUT=${TIMEOUT:-150}  # one trainer, seconds (a prefkit run compiles for about a minute first)
BUDGET=${BUDGET:-420}    # all trainers together, seconds; the whole script takes about 60 s more
VARIANTS=${VARIANTS:-trl-dpo,prefkit-dpo,trl-kto,prefkit-kto,trl-dpo-defaults}
PROFILE=${PROFILE:-1}

if [ "${1:-}" = fetch ]; then
    # Python 3.12 x86-64 is what the GPU machine runs (device README); versions as NEEDS in train_gpu.py
    mkdir -p "$WHEELS"
    exec "$PYTHON" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d "$WHEELS" trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 fsspec==2026.9.0 pyarrow==26.0.1
fi

OUT=${OUT:?set OUT to the folder the results go to}
mkdir -p "$OUT"
LOGS=$(mktemp -d /tmp/gpu-run-logs.XXXXXX)
exec > >(tee "$OUT/gpu_run.log") 2>&1
TEE=$!
# whatever happens below, the per-trainer logs come back as one file, and the log is complete on exit
trap 'tar -czf "$OUT/worker-logs.tar.gz" -C "$LOGS" . 2>/dev/null; exec >&- 2>&-; wait $TEE' EXIT
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false

echo "== $(date -u +%FT%TZ) gpu_run.sh: device $DEVICE, shape $SHAPE, $STEPS steps, $TIMEOUT s per trainer, $BUDGET s in all"
if command -v nvidia-smi >/dev/null; then
    nvidia-smi
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm,power.limit --format=csv
fi

echo "== installing what this Python lacks (from $WHEELS)"
if ! need=$("$PYTHON" bench/train_gpu.py --wheels-needed "$WHEELS"); then
    echo "!! some needs are unmet (above); the runs that need them will fail and say so"
    need=""
fi
if [ -n "$need" ]; then
    echo "$need"
    # shellcheck disable=SC2086  # one path a line, no spaces in wheel names
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site $need &&
        export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH} || echo "!! pip install failed"
else
    echo "nothing to install"
fi
"$PYTHON" - <<'EOF'
import importlib
for name in ("torch", "transformers", "trl", "datasets", "accelerate", "tokenizers", "pyarrow", "fsspec", "dill"):
    try:
        m = importlib.import_module(name)
        print(f"{name} {getattr(m, '__version__', '?')}  ({m.__file__})")
    except Exception as e:
        print(f"{name}: {type(e).__name__}: {e}")
import torch
print("CUDA", torch.version.cuda, "available:", torch.cuda.is_available(),
      torch.cuda.get_device_name() if torch.cuda.is_available() else "")
EOF

echo "== bench/train_gpu.py"
args=(--device "$DEVICE" --shape "$SHAPE" --steps "$STEPS" --timeout "$TIMEOUT" --budget "$BUDGET"
    --variants "$VARIANTS" --results "$OUT" --logs "$LOGS")
[ "$PROFILE" = 1 ] && args+=(--profile)
# the per-trainer limits are inside; this one is the backstop for the whole (model building included)
timeout -k 10 $((BUDGET + 120)) "$PYTHON" bench/train_gpu.py "${args[@]}" "$@"
rc=$?
echo "== $(date -u +%FT%TZ) done: train_gpu.py exit status $rc; in $OUT: $(ls "$OUT" | tr '\n' ' ')"
exit $rc
