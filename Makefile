# The README's two commands: `make app` and `make test`. Both create .venv on first use.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed-stamp
# Pinned CPU build first: a bare `torch` requirement would make pip fetch a multi-GB CUDA build.
TORCH   := torch==2.13.0
PYTEST_ARGS ?= -n 2

.PHONY: app test install chromium system-packages lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

# Labelling app on a working copy of the bundled demo store (data/demo stays untouched).
app: $(STAMP)
	$(BIN)/prefkit app --demo

# Debian's Chromium drives the browser tests (Playwright never downloads a browser here).
chromium:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -q && apt-get install -y -q chromium; }

# The team tests start their own PostgreSQL server (Debian's, as a non-root user) in a temporary folder.
system-packages: chromium
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { apt-get update -q && apt-get install -y -q postgresql; }

test: $(STAMP) system-packages
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) .prefkit
