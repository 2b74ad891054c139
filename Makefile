# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
VENV ?= .venv
BIN := $(VENV)/bin
REAL ?= ../shared/ecg-real

# `make weights`: the shipped weights, reproducibly. Stage 1 pre-trains the backbone on a
# synthetic corpus (every label, any amount); stage 2 trains it on the real labelled records
# of TRAIN_DATA (PTB-XL, CinC 2017, MIT-BIH DS1) beside a smaller synthetic corpus; then each
# task's adapter learns from real labels where any exist, from synthetic ones only for
# potassium, and for rr_interval beside MIT-BIH's (which has no record in validation fold 9).
# Stage 2 leaves the masked-beat loss out (REAL_SSL=0): it doubles the cost of a step, and on a
# 2-core CPU the labelled real windows are worth more. A second pass (REAL_EPOCHS2, a warm
# restart of the cosine schedule at a lower rate) continues from the first.
WEIGHTS_N ?= 20000
WEIGHTS_EPOCHS ?= 6
MIX_N ?= 3000
REAL_EPOCHS ?= 3
REAL_EPOCHS2 ?= 4
REAL_SSL ?= 0
WORK ?= data/weights-build
TRAIN_DATA ?= ../shared/ecg-train
comma := ,
space := $(empty) $(empty)
TASKS := infarction hypertrophy conduction st_t rhythm age sex arrhythmia superclass noise
REAL_ADAPTERS := $(addsuffix -adapter,$(TASKS))
REAL_DS := $(WORK)/ptbxl-ds $(WORK)/cinc2017-ds $(WORK)/mitdb-ds
PRE := $(BIN)/ecgmoe preprocess --overwrite --quiet
# the per-beat AAMI head on MIT-BIH DS1 (raw records + .atr), scored leave-one-record-out
BEAT_HEAD := $(BIN)/ecgmoe finetune $(TRAIN_DATA)/mitdb --task beat_class --folds 22 --quiet

.PHONY: install demo test weights beat-head $(REAL_ADAPTERS) rr-adapter real-data baselines examples clean

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

# ruff (style), lint-imports (the layers in pyproject.toml), then the suite
test: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest

examples: install
	$(BIN)/ecgmoe simulate examples/records -n 8 --seed 2026 --showcase --overwrite --quiet

# the real training and validation corpora as datasets (read in place, never copied)
real-data: install
	$(PRE) $(TRAIN_DATA)/ptbxl -o $(WORK)/ptbxl-ds
	$(PRE) $(TRAIN_DATA)/cinc2017 -o $(WORK)/cinc2017-ds --lead-map ECG=I
	$(PRE) $(TRAIN_DATA)/mitdb -o $(WORK)/mitdb-ds
	$(PRE) $(REAL)/cpsc2021 -o $(WORK)/cpsc2021-ds
	$(PRE) $(REAL)/svdb -o $(WORK)/svdb-ds
	$(PRE) $(REAL)/cinc2021 -o $(WORK)/cinc2021-ds

weights: real-data
	$(BIN)/ecgmoe simulate $(WORK)/sim -n $(WEIGHTS_N) --seed 1 --overwrite --quiet
	$(PRE) $(WORK)/sim -o $(WORK)/sim-ds
	$(BIN)/ecgmoe simulate $(WORK)/sim-mix -n $(MIX_N) --seed 2 --overwrite --quiet
	$(PRE) $(WORK)/sim-mix -o $(WORK)/sim-mix-ds
	rm -rf $(WORK)/run-synth $(WORK)/run
	$(BIN)/ecgmoe train $(WORK)/sim-ds -o $(WORK)/run-synth --epochs $(WEIGHTS_EPOCHS) --quiet
	$(BIN)/ecgmoe train $(WORK)/sim-mix-ds $(REAL_DS) -o $(WORK)/run \
	  --init $(WORK)/run-synth/weights --epochs $(REAL_EPOCHS) --lr 5e-4 \
	  --ssl-weight $(REAL_SSL) --quiet
	rm -rf $(WORK)/run2
	$(BIN)/ecgmoe train $(WORK)/sim-mix-ds $(REAL_DS) -o $(WORK)/run2 \
	  --init $(WORK)/run/weights --epochs $(REAL_EPOCHS2) --lr 3e-4 --ssl-weight $(REAL_SSL) --quiet
	rm -rf $(WORK)/run && mv $(WORK)/run2 $(WORK)/run
	$(BIN)/ecgmoe finetune $(REAL_DS) --task $(subst $(space),$(comma),$(TASKS)) --epochs 8 \
	  --backbone $(WORK)/run/weights -o $(WORK)/run/weights --quiet
	$(BIN)/ecgmoe finetune $(WORK)/mitdb-ds $(WORK)/sim-mix-ds --task rr_interval --epochs 8 \
	  --backbone $(WORK)/run/weights -o $(WORK)/run/weights --quiet
	$(BIN)/ecgmoe finetune $(WORK)/sim-ds --task potassium --epochs 8 \
	  --backbone $(WORK)/run/weights -o $(WORK)/run/weights --quiet
	$(BEAT_HEAD) --backbone $(WORK)/run/weights -o $(WORK)/run/weights
	rm -rf weights/backbone.* weights/adapters weights/heads
	cp $(WORK)/run/weights/backbone.* weights/
	cp -r $(WORK)/run/weights/adapters $(WORK)/run/weights/heads weights/
	$(BIN)/ecgmoe evaluate $(WORK)/sim-ds --weights weights --json > weights/metrics.json
	$(BIN)/python benchmarks/real_eval.py --weights weights --ptbxl $(WORK)/ptbxl-ds \
	  --cinc2017 $(WORK)/cinc2017-ds --mitdb $(WORK)/mitdb-ds --annotated $(WORK)/cpsc2021-ds \
	  --annotated $(WORK)/svdb-ds --twelve-lead $(WORK)/cinc2021-ds --bootstrap 200 \
	  --json weights/metrics_real.json > /dev/null

# `make beat-head`: only the beat head, on the shipped backbone (after the backbone changed)
beat-head: install
	rm -rf $(WORK)/beat-head
	$(BEAT_HEAD) --backbone weights -o $(WORK)/beat-head
	rm -rf weights/heads
	cp -r $(WORK)/beat-head/heads weights/

# `make rhythm-adapter`, `make arrhythmia-adapter`, ... (any task of TASKS): only that adapter
# (its RR evidence with it), on the shipped backbone, by the recipe `make weights` uses for it
$(REAL_ADAPTERS): %-adapter: real-data
	rm -rf $(WORK)/$*
	$(BIN)/ecgmoe finetune $(REAL_DS) --task $* --epochs 8 --backbone weights \
	  -o $(WORK)/$* --quiet
	cp $(WORK)/$*/adapters/$*.* weights/adapters/

# `make rr-adapter`: only the rr_interval adapter (its residual weight with it), on the shipped
# backbone, by the recipe `make weights` uses for it
rr-adapter: real-data
	$(BIN)/ecgmoe simulate $(WORK)/sim-mix -n $(MIX_N) --seed 2 --overwrite --quiet
	$(PRE) $(WORK)/sim-mix -o $(WORK)/sim-mix-ds
	rm -rf $(WORK)/rr
	$(BIN)/ecgmoe finetune $(WORK)/mitdb-ds $(WORK)/sim-mix-ds --task rr_interval --epochs 8 \
	  --backbone weights -o $(WORK)/rr --quiet
	cp $(WORK)/rr/adapters/rr_interval.* weights/adapters/

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
