# Two commands do all set-up: `make demo` and `make test`. Each creates .venv and
# installs the pinned dependencies when missing.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint format bench docs clean lock

# torch first, by its pin (requirements-torch.txt): here a local CPU wheel, elsewhere PyPI's
# build, whose files, hashes and dependencies differ, so torch alone is not hash-checked.
# Then every other package, transitive ones included, from the resolver's lock with each
# file's hash checked (requirements.lock: pip-compile, see `make lock`); then fewlabels.
$(STAMP): pyproject.toml requirements.lock requirements-torch.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
	$(BIN)/python -m pip install -q -r requirements-torch.txt
	$(BIN)/python -m pip install -q --require-hashes -r requirements.lock
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	@touch $(STAMP)

# Re-resolve requirements.lock (keeps its pins unless pyproject.toml needs others; add
# --upgrade to move them): the extras `make` installs, every file's hash, torch left out.
lock: $(STAMP)
	$(BIN)/python -m pip install -q pip-tools
	$(BIN)/pip-compile --generate-hashes --strip-extras --no-emit-index-url \
	  --no-emit-find-links --unsafe-package torch -c requirements-torch.txt \
	  --extra dev --extra postgres --extra umap --extra export --extra hf --extra track \
	  -o requirements.lock pyproject.toml

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
