#!/usr/bin/env bash
# The checks that need a CUDA GPU, which CI does not have: the tests in tests/gpu (training worker and
# transformers engine on the GPU), then `genesys bench train` on the GPU with a random-weight model of
# SmolLM2-135M's shape (its speed is the real model's; no download needed).
#
# Run from the repository root on a GPU machine whose Python has torch with CUDA and the training
# packages (trl, peft, datasets, ...). PYTHON picks the interpreter (default: python3); results go to
# OUT_DIR (default: gpu-check/). Exits non-zero when a test fails or the benchmark cannot run.
set -uo pipefail
PYTHON=${PYTHON:-python3}
OUT_DIR=${OUT_DIR:-gpu-check}
mkdir -p "$OUT_DIR"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
status=0

"$PYTHON" -c "import torch; assert torch.cuda.is_available(), 'torch sees no CUDA GPU'; \
print('torch', torch.__version__, 'CUDA', torch.version.cuda, torch.cuda.get_device_name(0))" || exit 1

"$PYTHON" -m pytest -m gpu --noconftest -p no:cacheprovider -q tests/gpu \
    --junitxml "$OUT_DIR/gpu-tests.xml" || status=1

model="$OUT_DIR/smollm2-135m-shaped"
"$PYTHON" -c "from pathlib import Path; from tests.support.tiny_llama import SMOLLM2_135M_SHAPE, make_tiny_llama; \
make_tiny_llama(Path('$model'), shape=SMOLLM2_135M_SHAPE)" || exit 1
"$PYTHON" -m genesys.cli bench train --model "$model" --device cuda --data-dir "$OUT_DIR/data" \
    --batch-size "${BENCH_BATCH:-16}" --seq-len "${BENCH_SEQ:-512}" --steps "${BENCH_STEPS:-40}" \
    --warmup-steps 5 --repeats 2 --json-out "$OUT_DIR/bench-train.json" || status=1
exit $status
