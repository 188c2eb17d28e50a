# Two commands on a fresh machine: `make demo` and `make test`. Both build .venv first.
PYTHON ?= python3
VENV ?= .venv
EXTRAS ?= tf-cpu,dev
PY := $(VENV)/bin/python
comma := ,
STAMP := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))
DEMO := --config configs/demo.py

.PHONY: setup demo test clean-demo

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	rm -f $(VENV)/.installed-*
	touch $@

setup: $(STAMP)

demo: $(STAMP)
	$(PY) demo_data.py --out data/demo/raw
	$(PY) sort_data.py $(DEMO)
	$(PY) spec.py $(DEMO)
	$(PY) train.py $(DEMO) --overwrite
	$(PY) test.py $(DEMO)
	$(PY) -m submission $(DEMO)
	@echo "Demo done. Validation result (runs/demo/test-val/):"
	@cat runs/demo/test-val/summary.txt

# Tests run on every core (at most 4: each worker holds a Keras backend in memory). The JAX run
# repeats the Keras tests, less the cases that only vary what no backend touches.
XDIST := -n auto --maxprocesses 4
test: $(STAMP)
	$(PY) -m pytest $(XDIST)
	KERAS_BACKEND=jax $(PY) -m pytest $(XDIST) -m "backend and not one_backend" -k "not insectset32"

clean-demo:
	rm -rf data/demo runs/demo
