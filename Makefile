# Style and Content, Texture Synthesis: the course kit.
#   make lab    set up .venv (once) and start JupyterLab on notebooks/00_start_here.ipynb
#   make test   set up .venv (once) and run lint + the whole test suite
# See README.md for the options below.

PYTHON3 ?= python3
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.course-kit-installed
PORT    ?= 8888
HOST    ?= 127.0.0.1
# NO_BROWSER=1 for a server or a container; TOKEN= to set the access token (empty: Jupyter makes one)
NO_BROWSER ?=
TOKEN   ?=
JOBS    ?= 2
PYTEST_ARGS ?=
ASSIGNMENT ?=
SUBMISSIONS ?=
TIMEOUT ?=
LINT_PATHS := course_lib tests benchmarks notebooks solutions nbgrader_config.py

.PHONY: lab test lint format release grade book bench clean-venv setup

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON3) -m venv $(VENV)
	$(PY) -m pip install --quiet -e ".[test]"
	$(PY) -m ipykernel install --sys-prefix --name course-kit --display-name "Python (course kit)" >/dev/null
	@touch $(STAMP)
	@echo "course kit: environment ready in $(VENV)"

lab: $(STAMP)
	$(VENV)/bin/jupyter lab --ip=$(HOST) --port=$(PORT) \
	  $(if $(NO_BROWSER),--no-browser,) \
	  $(if $(TOKEN),--IdentityProvider.token=$(TOKEN),) \
	  notebooks/00_start_here.ipynb

lint: $(STAMP)
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)

format: $(STAMP)
	$(VENV)/bin/ruff check --fix $(LINT_PATHS)
	$(VENV)/bin/ruff format $(LINT_PATHS)

test: $(STAMP) lint
	$(PY) -m pytest -n $(JOBS) $(PYTEST_ARGS)

release: $(STAMP)
	$(VENV)/bin/course-kit release

grade: $(STAMP)
	@test -n "$(ASSIGNMENT)" || { echo "usage: make grade ASSIGNMENT=<id> SUBMISSIONS=<folder or zip>"; exit 2; }
	@test -n "$(SUBMISSIONS)" || { echo "usage: make grade ASSIGNMENT=<id> SUBMISSIONS=<folder or zip>"; exit 2; }
	$(VENV)/bin/course-kit grade $(ASSIGNMENT) $(SUBMISSIONS) $(if $(TIMEOUT),--timeout $(TIMEOUT),)

bench: $(STAMP)
	$(PY) -m benchmarks.run

clean-venv:
	rm -rf $(VENV)
