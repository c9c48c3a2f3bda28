# autoshoot — every target creates or reuses .venv and installs what it needs.
# Installing is skipped when pyproject.toml has not changed since the last install.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CATALOG ?=
OUT    ?= runs/$(shell date +%Y-%m-%d)
ARGS   ?=

.PHONY: install shoot test demo lint clean help

help:
	@echo "make shoot CATALOG=bags.csv [OUT=runs/<date>] [ARGS='--profile tiny']"
	@echo "make test | make demo | make lint | make clean"

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "autoshoot needs Python 3.11 or newer: set PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev,ray,cloud]"
	@# rembg's opencv-python-headless and mediapipe's opencv-contrib-python share cv2/ (same version): contrib on top
	$(BIN)/python -m pip install --quiet --force-reinstall --no-deps "$$(grep -o 'opencv-contrib-python==[0-9.]*' pyproject.toml)"
	@touch $(STAMP)

install: $(STAMP)

shoot: $(STAMP)
	@test -n "$(CATALOG)" || { echo "usage: make shoot CATALOG=path/to/catalog.csv [OUT=runs/<date>]"; exit 2; }
	$(BIN)/autoshoot shoot "$(CATALOG)" --out "$(OUT)" $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q $(ARGS)

demo: $(STAMP)
	$(BIN)/autoshoot shoot catalogs/example.csv --out runs/demo --profile tiny $(ARGS)
	@echo "open runs/demo/report.html"

lint: $(STAMP)
	$(BIN)/ruff check autoshoot tests bench catalogs
	$(BIN)/ruff format --check autoshoot tests bench catalogs

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
