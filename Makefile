# Two commands do all the set-up on a fresh machine:  `make demo`  and  `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
THREADS := OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 NUMBA_NUM_THREADS=2

.PHONY: install demo test lint clean

$(BIN)/activate:
	$(PY) -m venv $(VENV)

# torch==2.13.0 first (the local CPU wheel), then everything else under a constraint that pins it,
# so no step can ever resolve a multi-GB CUDA build.
install: $(BIN)/activate
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e ".[test]"

demo: install
	$(THREADS) $(BIN)/dice demo

test: install
	$(THREADS) $(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) dice_demo_output .pytest_cache
