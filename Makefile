# Two commands do all the set-up on a fresh machine:  `make demo`  and  `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
THREADS := OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 NUMBA_NUM_THREADS=2

.PHONY: install demo test test-benchmarks lint clean docs

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

# the benchmark scripts' own tests (small inputs); `-m slow` opts into the long end-to-end checks
test-benchmarks: install
	$(THREADS) $(BIN)/python -m pytest -q -m benchmark

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

# HTML documentation (docs/_build/html), warnings are errors. Installs the docs extra only when one of its
# packages is missing. Works offline: no intersphinx, notebooks are rendered without being executed.
docs: install
	$(BIN)/python -c "import sphinx, myst_nb, furo, sphinx_autodoc_typehints, sphinx_copybutton, importlib; importlib.import_module('sphinx-mathjax-offline')" 2>/dev/null \
		|| $(BIN)/pip install -q -c constraints.txt -e ".[test,docs]"
	$(BIN)/sphinx-build -W --keep-going -b html docs docs/_build/html

clean:
	rm -rf $(VENV) dice_demo_output .pytest_cache
