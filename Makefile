# Two commands do all set-up: `make demo` and `make test`. Each creates .venv and
# installs the pinned dependencies when missing.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint format bench docs clean

$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
	$(BIN)/python -m pip install -q -c requirements.lock -e '.[dev,postgres,umap,export,hf]'
	@touch $(STAMP)

demo: export OMP_WAIT_POLICY ?= PASSIVE
demo: $(STAMP)
	$(BIN)/fewlabels study examples/digits.yaml --out runs/demo --workers 2

test: export OMP_WAIT_POLICY ?= PASSIVE
test: lint
	$(BIN)/python -m pytest

# ruff, the package layers ([tool.importlinter] in pyproject.toml), then file and function
# sizes and function-level package imports (scripts/check_layout.py)
lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts
	$(BIN)/lint-imports --no-cache
	$(BIN)/python scripts/check_layout.py

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks scripts
	$(BIN)/ruff check --fix src tests benchmarks scripts

# Quick speed benchmarks (a few minutes); accuracy benchmarks: see benchmarks/bench_supervised.py
bench: export OMP_WAIT_POLICY ?= PASSIVE
bench: $(STAMP)
	$(BIN)/python benchmarks/bench_augment.py
	$(BIN)/python benchmarks/bench_train_step.py --backbones convnet resnet18
	$(BIN)/python benchmarks/bench_data.py

docs: $(STAMP)
	$(BIN)/python scripts/augment_gallery.py --out docs/img

clean:
	rm -rf $(VENV) runs .pytest_cache
