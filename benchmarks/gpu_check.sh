#!/usr/bin/env bash
# GPU checks of maro_kernels (the fused policy-gradient loss), for a machine with one CUDA device, e.g. an H100.
# Runs the `gpu` tests, then the benchmark at the target shape (N=16384, H=4096, V=128256, bf16) and one smaller
# shape, then a short real training run of the tiny model on the GPU (train_smoke.py), printing markdown tables, then
# a few FSDP2 steps of configs/gpu_fsdp.yaml on this one GPU.
# Time limits: tests 100 s, benchmark 220 s, training 90 s, FSDP 70 s, so 8 minutes in all. Needs torch and triton (and
# pytest for the tests, lightning + transformers for the training runs, jsonargparse for the FSDP run's config); the
# project need not be installed: kernels/ and maro_lightning/ go on the path.
#
#   bash benchmarks/gpu_check.sh [extra bench_pg_loss.py flags, e.g. --impls triton matmul3]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}

# `maro_kernels` is a package-dir mapping of kernels/ in pyproject: a symlink makes it importable without installing.
shim=$(mktemp -d)
runs=$(mktemp -d)  # the FSDP run's logs and checkpoint
trap 'rm -rf "$shim" "$runs"' EXIT
ln -s "$PWD/kernels" "$shim/maro_kernels"
export PYTHONPATH="$shim:$PWD${PYTHONPATH:+:$PYTHONPATH}"

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PYTHON" -c 'import torch, triton; print("torch", torch.__version__, "triton", triton.__version__)'

# -m gpu overrides pyproject's default `-m "not gpu and not slow"`; confcutdir keeps other packages' conftests out.
if "$PYTHON" -c 'import pytest' 2>/dev/null; then
  timeout 100 "$PYTHON" -m pytest -q -m gpu --confcutdir=tests/kernels tests/kernels || echo "GPU TESTS FAILED (rc=$?)"
else
  echo "GPU TESTS NOT RUN: pytest is not installed here (put a pure-Python pytest on PYTHONPATH)"
fi

# One table, the target shape first. Rows stream out as measured, so a time limit keeps what was done; impls that
# cannot run (Liger is not on the image, torch.compile past its 100 s) say n/a.
timeout 220 "$PYTHON" benchmarks/bench_pg_loss.py --device cuda --dtype bfloat16 \
  --shapes 16384x4096x128256 4096x2048x32000 --repeats 5 --timeout 100 "$@" \
  || echo "BENCHMARK FAILED OR TIMED OUT (rc=$?)"

# The whole loop on the GPU: generation, scoring, credit, the Triton loss in training_step.
timeout 90 "$PYTHON" benchmarks/train_smoke.py --device cuda --steps 30 || echo "TRAINING RUN FAILED OR TIMED OUT (rc=$?)"

# FSDP2 as configs/gpu_fsdp.yaml sets it up (ModelParallelStrategy, bf16-mixed, clipping, a ladder validation, the
# single-file checkpoint), on one GPU: one rank, so nothing is sharded across processes and the lock-step is not
# exercised (tests/training/test_fsdp.py runs two ranks on CPU). The tiny model stands in for Qwen (this machine
# reaches no hub), its prompts cut to fit its 1024 positions. LightningCLI needs jsonargparse (the GPU image may lack it).
if "$PYTHON" -c 'import jsonargparse' 2>/dev/null; then
  timeout -k 10 70 "$PYTHON" -m maro_lightning.cli fit -c configs/gpu_fsdp.yaml --trainer.devices 1 \
    --trainer.strategy.data_parallel_size 1 --trainer.max_steps 3 --trainer.accumulate_grad_batches 1 \
    --trainer.val_check_interval 2 --trainer.limit_val_batches 1 --trainer.enable_progress_bar false \
    --trainer.default_root_dir "$runs" --model.init_args.policy null --model.init_args.sampling.max_new_tokens 16 \
    --model.init_args.sampling.max_prompt_tokens 512 --model.init_args.sampling.keep_head_tokens 128 \
    --data.evaluation.episodes 2 && echo "FSDP RUN OK" || echo "FSDP RUN FAILED OR TIMED OUT (rc=$?)"
else
  echo "FSDP RUN NOT RUN: jsonargparse is not installed here (carry its wheels; LightningCLI reads the config with it)"
fi
