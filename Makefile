# The README's two quick-start commands are `make demo` and `make test`; both set up .venv when missing.
# torch is installed first, pinned to the CPU build on this disk (DESIGN §8): otherwise pip resolves
# `torch` to a multi-GB CUDA build.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
TORCH  ?= torch==2.13.0

.PHONY: demo test lint format bench clean

$(BIN)/maro: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(BIN)/maro

demo: $(BIN)/maro
	OMP_NUM_THREADS=1 $(BIN)/maro fit

lint: $(BIN)/maro
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q

format: $(BIN)/maro
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(BIN)/maro
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/bench_envs.py
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/bench_rollout.py
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/bench_pg_loss.py

clean:
	rm -rf $(VENV) *.egg-info
