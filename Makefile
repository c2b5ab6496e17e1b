# Style and Content, Texture Synthesis: the course kit.
#   make lab    set up .venv (once: what the notebooks need) and start JupyterLab on
#               notebooks/00_start_here.ipynb; TORCH=cpu for PyTorch's CPU-only wheels
#   make test   add the test tools to .venv (once) and run lint + the whole test suite
#   make book   execute the notebooks and render the course book into _build/book/
# See README.md for the options below.

PYTHON3 ?= python3
# Inside an active conda environment made from environment.yml (`conda activate course-kit`),
# make uses that environment instead of creating .venv; VENV=$$CONDA_PREFIX does so for any other.
ifeq ($(CONDA_DEFAULT_ENV),course-kit)
VENV    ?= $(CONDA_PREFIX)
endif
VENV    ?= .venv
PY      := $(VENV)/bin/python
# Two stamps: STAMP = what the notebooks need (make lab, book, release, grade); TEST_STAMP = the
# test extras on top (make test, lint), so `make lab` then `make test` adds only the extras.
STAMP   := $(VENV)/.course-kit-installed
TEST_STAMP := $(VENV)/.course-kit-test-installed
# TORCH=cpu: install torch and torchvision from PyTorch's CPU-only index first (about 0.2 GB
# instead of about 3 GB of CUDA wheels on Linux); TORCH=cu126 etc. picks that CUDA build. Empty:
# PyPI's default wheel (CUDA on Linux). Applies when the environment is (re)made: make clean-venv.
TORCH   ?=
TORCH_INDEX ?= https://download.pytorch.org/whl/$(TORCH)
TORCH_PACKAGES ?= torch>=2.2,<3 torchvision>=0.17
# THREADS=N: CPU threads for torch in the notebooks (COURSE_THREADS; default: course_lib's
# policy, see course_lib/threads.py)
THREADS ?=
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
# make grade SANDBOX=bwrap|none|auto (default auto: bubblewrap where it works); make release FORCE=1
SANDBOX ?=
FORCE   ?=
# make book QUICK=1: quick mode (COURSE_QUICK=1); NOTEBOOKS="notebooks/00_start_here.ipynb ...":
# only these (default: all of notebooks/)
QUICK   ?=
NOTEBOOKS ?=
SABOTAGE ?=
# the browser tests drive Debian's Chromium with Playwright (never a downloaded browser)
CHROMIUM ?= /usr/bin/chromium
LINT_PATHS := course_lib course_kit tests benchmarks notebooks solutions deploy nbgrader_config.py

.PHONY: lab test lint format release grade book bench clean-venv setup setup-test chromium claims \
	git-filter hub weights bubblewrap

setup: $(STAMP) bubblewrap

# Debian's bubblewrap isolates each submission while grading (course_kit/sandbox.py): installed
# with apt-get when missing and apt-get can be used (root, or password-less sudo); otherwise
# `make grade` says so and grades without namespaces.
bubblewrap:
	@if command -v bwrap >/dev/null 2>&1; then :; \
	elif ! command -v apt-get >/dev/null 2>&1; then \
	  echo "course kit: no bwrap and no apt-get: grading will run without a sandbox (see README)"; \
	else \
	  if [ "$$(id -u)" = 0 ]; then sudo=""; else sudo="sudo -n"; fi; \
	  echo "course kit: installing Debian's bubblewrap for sandboxed grading (apt-get)"; \
	  { $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    $$sudo apt-get install -y -qq --no-install-recommends bubblewrap >/dev/null; } \
	  || echo "course kit: could not install bubblewrap: grading will run without a sandbox"; \
	fi

setup-test: $(TEST_STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON3) -m venv $(VENV)
	$(if $(TORCH),$(PY) -m pip install --quiet $(foreach p,$(TORCH_PACKAGES),"$(p)") --index-url $(TORCH_INDEX),)
	$(PY) -m pip install --quiet -e .
	@rm -rf $(VENV)/share/jupyter/kernels/course-kit  # an older kit's second, identical kernel
	@touch $(STAMP)
	@echo "course kit: environment ready in $(VENV)"

$(TEST_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e ".[test]"
	@touch $(TEST_STAMP)
	@echo "course kit: test tools added to $(VENV)"

# git stages notebooks without their outputs (course_lib/nbstrip.py; .gitattributes names the
# filter); the files on disk keep them. Only inside a git work tree; harmless to repeat.
git-filter: $(STAMP)
	@if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then \
	  git config filter.course-kit-nbstrip.clean "'$(abspath $(PY))' -m course_lib.nbstrip" && \
	  echo "course kit: git stages notebooks without outputs (filter course-kit-nbstrip)"; \
	fi

lab: $(STAMP) git-filter
	$(if $(THREADS),COURSE_THREADS=$(THREADS) ,)$(VENV)/bin/jupyter lab --ip=$(HOST) --port=$(PORT) \
	  $(if $(NO_BROWSER),--no-browser,) \
	  $(if $(TOKEN),--IdentityProvider.token=$(TOKEN),) \
	  $(if $(filter 0,$(shell id -u)),--allow-root,) \
	  --ServerApp.root_dir="$(CURDIR)" \
	  --LabApp.default_url=/lab/tree/notebooks/00_start_here.ipynb

lint: $(TEST_STAMP)
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)

format: $(TEST_STAMP)
	$(VENV)/bin/ruff check --fix $(LINT_PATHS)
	$(VENV)/bin/ruff format $(LINT_PATHS)

# Two pytest runs: first everything but the book and the browser (in parallel; the notebook tests
# save each executed notebook into _build/executed/), then the book (rendered from those executed
# copies, so no notebook runs twice) and JupyterLab in headless Chromium. Exit 5 (nothing
# selected, e.g. PYTEST_ARGS="-k samples") is fine for the second run.
test: $(TEST_STAMP) lint chromium bubblewrap
	$(PY) -m pytest -n $(JOBS) --dist loadgroup -m "not book and not browser" $(PYTEST_ARGS)
	@echo "course kit: book and browser tests (after the notebooks)"
	$(PY) -m pytest -m "book or browser" $(PYTEST_ARGS); rc=$$?; test $$rc -eq 0 -o $$rc -eq 5

book: $(STAMP)
	$(PY) -m course_kit.book $(if $(filter-out 0,$(QUICK)),--quick,) $(NOTEBOOKS)
	@echo "course kit: open _build/book/index.html"

# Debian's Chromium for tests/test_kit_browser.py: installed with apt-get when missing and apt-get can
# be used (as root, or with password-less sudo); otherwise those tests are skipped and say why.
chromium:
	@if [ -x "$(CHROMIUM)" ]; then :; \
	elif ! command -v apt-get >/dev/null 2>&1; then \
	  echo "course kit: no $(CHROMIUM) and no apt-get: the browser tests will be skipped"; \
	else \
	  if [ "$$(id -u)" = 0 ]; then sudo=""; else sudo="sudo -n"; fi; \
	  echo "course kit: installing Debian's chromium for the browser tests (apt-get)"; \
	  { $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    $$sudo apt-get install -y -qq --no-install-recommends chromium >/dev/null; } \
	  || echo "course kit: could not install chromium: the browser tests will be skipped"; \
	fi

release: $(STAMP)
	$(VENV)/bin/course-kit release $(if $(filter-out 0,$(FORCE)),--force,)

grade: $(STAMP) bubblewrap
	@test -n "$(ASSIGNMENT)" || { echo "usage: make grade ASSIGNMENT=<id> SUBMISSIONS=<folder or zip>"; exit 2; }
	@test -n "$(SUBMISSIONS)" || { echo "usage: make grade ASSIGNMENT=<id> SUBMISSIONS=<folder or zip>"; exit 2; }
	$(VENV)/bin/course-kit grade $(ASSIGNMENT) $(SUBMISSIONS) $(if $(TIMEOUT),--timeout $(TIMEOUT),) \
	  $(if $(SANDBOX),--sandbox $(SANDBOX),)

bench: $(STAMP)
	$(PY) -m benchmarks.run

clean-venv:
	rm -rf $(VENV)

# Default-mode runs that check every claim a lesson makes (not part of make test: 05-07 take
# many minutes each on a CPU). NOTEBOOKS="notebooks/02_efros_leung.ipynb ..." (default: all).
# SABOTAGE=1: instead, apply every sabotage in the notebooks' metadata (the quick ones at quick
# size, the rest in default mode) and fail unless a claim it names fails (docs/CONTRIBUTING.md).
claims: $(STAMP)
	$(PY) -m course_kit.claims $(if $(filter-out 0,$(SABOTAGE)),--sabotage,) $(NOTEBOOKS)

# A JupyterHub for a class on this machine (as root): see deploy/README.md.
# make hub STUDENTS=ann,bob INSTRUCTORS=prof [HUB_IP=0.0.0.0] [HUB_PORT=8000] [HUB_AUTH=pam|shared]
HUB_IP   ?= 127.0.0.1
HUB_PORT ?= 8000
HUB_AUTH ?= pam
STUDENTS ?=
INSTRUCTORS ?=
hub: $(STAMP)
	$(PY) -m pip install --quiet -e ".[hub]"
	$(PY) -m course_kit.hub serve --ip $(HUB_IP) --port $(HUB_PORT) --auth $(HUB_AUTH) \
	  --students "$(STUDENTS)" --instructors "$(INSTRUCTORS)"

# torchvision's ImageNet VGG-19 weights (548 MB) into its cache ($TORCH_HOME/hub/checkpoints):
# notebooks 06 and 07 then use them by themselves. Needs a network; offline it says what to do.
weights: $(STAMP)
	$(PY) -c "from course_lib.features import fetch_imagenet; fetch_imagenet()"
