# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
VENV ?= .venv
BIN := $(VENV)/bin
REAL ?= ../shared/ecg-real

# `make weights`: the shipped weights, reproducibly (synthetic corpus + real AF episodes).
WEIGHTS_N ?= 20000
WEIGHTS_EPOCHS ?= 6
WORK ?= data/weights-build
comma := ,
space := $(empty) $(empty)
TASKS := infarction hypertrophy conduction st_t rhythm age sex rr_interval arrhythmia potassium

.PHONY: install demo test weights baselines examples clean

# compileall: bytecode up front, as pip does for a wheel; with PYTHONDONTWRITEBYTECODE set, an
# editable install would compile every module again on each command (70-75 ms of imports).
$(BIN)/ecgmoe: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/python -m compileall -q ecgmoe_cli
	@touch $@

install: $(BIN)/ecgmoe

demo: install
	$(BIN)/ecgmoe predict examples/records -o out.parquet

test: install
	$(BIN)/python -m pytest

examples: install
	$(BIN)/ecgmoe simulate examples/records -n 8 --seed 2026 --showcase --overwrite --quiet

weights: install
	$(BIN)/ecgmoe simulate $(WORK)/sim -n $(WEIGHTS_N) --seed 1 --overwrite --quiet
	$(BIN)/ecgmoe preprocess $(WORK)/sim -o $(WORK)/sim-ds --overwrite --quiet
	$(BIN)/ecgmoe preprocess $(REAL)/cpsc2021 -o $(WORK)/cpsc2021-ds --overwrite --quiet
	rm -rf $(WORK)/run
	$(BIN)/ecgmoe train $(WORK)/sim-ds -o $(WORK)/run --epochs $(WEIGHTS_EPOCHS) --quiet
	$(BIN)/ecgmoe finetune --task $(subst $(space),$(comma),$(TASKS)) --epochs 8 \
	  --data $(WORK)/sim-ds --data $(WORK)/cpsc2021-ds --backbone $(WORK)/run/weights --quiet
	rm -rf weights/backbone.* weights/adapters
	cp $(WORK)/run/weights/backbone.* weights/
	cp -r $(WORK)/run/weights/adapters weights/
	$(BIN)/ecgmoe evaluate $(WORK)/sim-ds --weights weights --json > weights/metrics.json

# `make baselines`: per_task and dense_multitask trained on the same corpus, for
# `ecgmoe bench --data $(WORK)/sim-ds --weights weights --baselines $(WORK)/baselines` (~90 min);
# dense_multitask by the shipped weights' own recipe (`ecgmoe train`), so only the layers differ
baselines: install
	$(BIN)/python benchmarks/train_baselines.py $(WORK)/sim-ds -o $(WORK)/baselines \
	  --models dense_multitask --recipe train
	$(BIN)/python benchmarks/train_baselines.py $(WORK)/sim-ds -o $(WORK)/baselines --models per_task

clean:
	rm -rf $(VENV) out.parquet .pytest_cache
	find ecgmoe_cli -name __pycache__ -prune -exec rm -rf {} +
