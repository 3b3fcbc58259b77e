# make demo: set up .venv and show the dashboard with a freshly computed demo run.
# make test: set up .venv (and Debian's Chromium when missing and we are root) and run every test.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo test screenshots bench bench-pages install chromium clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# torch first and pinned: a loose requirement with no torch installed would fetch a multi-GB CUDA build.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[test,photos]"
	touch $(STAMP)

install: $(STAMP)

chromium:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's chromium for the browser tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else echo "chromium is missing and cannot be installed here: browser tests will be skipped"; fi

demo: $(STAMP)
	$(BIN)/xaiboard demo

test: $(STAMP) chromium
	$(BIN)/python -m pytest $(PYTEST_ARGS)

screenshots: $(STAMP) chromium
	$(BIN)/python docs/screenshots.py

bench: $(STAMP)
	$(BIN)/python bench/metrics_speed.py
	$(BIN)/python bench/runner_throughput.py
	$(BIN)/python bench/server_latency.py
	$(BIN)/python bench/store_size.py
	$(BIN)/python bench/runner_scale.py
	$(BIN)/python bench/diagnostics_cost.py
	$(BIN)/python bench/sharding.py
	$(BIN)/python bench/internals_cost.py

# page weight and time in Chromium on the photos demo (computed first when missing, about 12 minutes)
bench-pages: $(STAMP) chromium
	@ls xaiboard-runs/photos/xaiboard.db >/dev/null 2>&1 || $(BIN)/xaiboard demo --dataset photos --no-serve
	$(BIN)/python bench/page_weight.py --base xaiboard-runs

clean:
	rm -rf $(VENV) xaiboard-runs build *.egg-info
