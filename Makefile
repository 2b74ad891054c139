# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test weights clean

$(BIN)/ecgmoe: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

install: $(BIN)/ecgmoe

demo: install
	$(BIN)/ecgmoe predict examples/records -o out.parquet

test: install
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) out.parquet .pytest_cache
