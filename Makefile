# autoshoot — every target creates or reuses .venv and installs what it needs.
# Installing is skipped when pyproject.toml has not changed since the last install.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CATALOG ?=
OUT    ?= runs/$(shell date +%Y-%m-%d)
ARGS   ?=

# GNU make exits 2 whenever a recipe fails, whatever the recipe's own code. RUN_AUTOSHOOT says
# what autoshoot's own exit code was, and make's "Error N" line repeats it.
RUN_AUTOSHOOT = rc=0; "$$@" || rc=$$?; case $$rc in \
	0) ;; \
	1) echo "autoshoot exited 1: some SKU failed (see the reasons in results.csv)" >&2 ;; \
	2) echo "autoshoot exited 2: a usage, catalog or config error, or missing models (nothing was run)" >&2 ;; \
	130) echo "autoshoot exited 130: interrupted (run the same command again to resume)" >&2 ;; \
	*) echo "autoshoot exited $$rc" >&2 ;; \
	esac; exit $$rc

.PHONY: install shoot test demo lint clean help

help:
	@echo "make shoot CATALOG=bags.csv [OUT=runs/<date>] [ARGS='--profile tiny']"
	@echo "make test | make demo | make lint | make clean"

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "autoshoot needs Python 3.11 or newer: set PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml setup.py | $(BIN)/python
	@# setuptools warns about every editable install on the build backend's stderr, which --quiet keeps
	PYTHONWARNINGS="ignore:Editable installation" $(BIN)/python -m pip install --quiet -e ".[dev,ray,cloud]"
	@# rembg's opencv-python-headless and mediapipe's opencv-contrib-python share cv2/ (same version): contrib on top
	$(BIN)/python -m pip install --quiet --force-reinstall --no-deps "$$(grep -o 'opencv-contrib-python==[0-9.]*' pyproject.toml)"
	@touch $(STAMP)

install: $(STAMP)

shoot: $(STAMP)
	@test -n "$(CATALOG)" || { echo "usage: make shoot CATALOG=path/to/catalog.csv [OUT=runs/<date>]"; exit 2; }
	@set -- $(BIN)/autoshoot shoot "$(CATALOG)" --out "$(OUT)" $(ARGS); echo "$$@"; $(RUN_AUTOSHOOT)

test: $(STAMP)
	$(BIN)/python -m pytest -q $(ARGS)

demo: $(STAMP)
	@set -- $(BIN)/autoshoot shoot catalogs/example.csv --out runs/demo --profile tiny $(ARGS); echo "$$@"; $(RUN_AUTOSHOOT)
	@echo "open runs/demo/report.html"

lint: $(STAMP)
	$(BIN)/ruff check autoshoot tests bench catalogs
	$(BIN)/ruff format --check autoshoot tests bench catalogs

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
