# Style and Content, Texture Synthesis: the course kit.
#   make lab    set up .venv (once: what the notebooks need; PyTorch's CPU-only wheels on a machine
#               without an NVIDIA GPU when their index answers) and start JupyterLab on
#               notebooks/00_start_here.ipynb
#   make test   add the test tools to .venv (once) and run lint + the whole test suite
#   make book   execute the notebooks and render the course book into _build/book/
#   make update bring the course's new commits in, keeping your edits
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
# Where torch and torchvision come from when the environment is (re)made (make clean-venv):
#   TORCH empty (default): on a machine where `nvidia-smi -L` lists no GPU, PyTorch's CPU-only
#     index (about 1.5 GB for .venv instead of about 6.3 GB of CUDA wheels on Linux) when it
#     answers within TORCH_PROBE_TIMEOUT seconds; otherwise (a GPU, or the index unreachable)
#     PyPI's default wheel (CUDA on Linux). make says which it chose and why.
#   TORCH=cpu / cu126 / ...: that build from PyTorch's index; TORCH=pypi: PyPI's default wheel.
# NVIDIA_SMI and TORCH_PROBE are the two probes (the tests replace them with true / false).
TORCH   ?=
TORCH_URL ?= https://download.pytorch.org/whl
TORCH_INDEX ?= $(TORCH_URL)/$(TORCH)
TORCH_PACKAGES ?= torch>=2.2,<3 torchvision>=0.17
TORCH_PROBE_TIMEOUT ?= 4
NVIDIA_SMI ?= nvidia-smi
TORCH_PROBE ?= $(PYTHON3) -c "import signal, urllib.request as u; \
  signal.alarm($(TORCH_PROBE_TIMEOUT) + 1); \
  u.urlopen('$(TORCH_URL)/cpu/torch/', timeout=$(TORCH_PROBE_TIMEOUT)).close()"
# cpu | gpu | unreachable | pypi | set (TORCH=cpu, cu126, ...); decided once, only when .venv is (re)made (the
# probes run when the recipe is expanded, so `make -n lab` shows the choice too)
_torch_choice = $(if $(filter pypi,$(TORCH)),pypi,$(if $(TORCH),set,$(if $(findstring GPU,$(shell $(NVIDIA_SMI) -L 2>/dev/null)),gpu,$(if $(shell $(TORCH_PROBE) >/dev/null 2>&1 && echo ok),cpu,unreachable))))
TORCH_CHOICE = $(eval TORCH_CHOICE := $(_torch_choice))$(TORCH_CHOICE)
TORCH_SAYS_gpu = an NVIDIA GPU was found: PyTorch from PyPI (its default wheel is the CUDA build)
TORCH_SAYS_cpu = no NVIDIA GPU found: PyTorch's CPU-only wheels from $(TORCH_URL)/cpu \
  (about 1.5 GB instead of 6.3 GB; TORCH=pypi for PyPI's CUDA wheel)
TORCH_SAYS_unreachable = no NVIDIA GPU found, but $(TORCH_URL)/cpu did not answer within \
  $(TORCH_PROBE_TIMEOUT) s: PyPI's default wheel (the CUDA build, about 6.3 GB; it runs on a CPU \
  too). Later, with the index reachable: make clean-venv && make lab TORCH=cpu
TORCH_SAYS_pypi = TORCH=pypi: PyTorch from PyPI (its default wheel)
TORCH_SAYS_set = TORCH=$(TORCH): PyTorch from $(TORCH_INDEX)
# the index torch comes from ("" = PyPI, with everything else)
TORCH_FROM = $(if $(filter set,$(TORCH_CHOICE)),$(TORCH_INDEX),$(if $(filter cpu,$(TORCH_CHOICE)),$(TORCH_URL)/cpu,))
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
	git-filter hub weights bubblewrap update

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
	@echo "course kit: $(TORCH_SAYS_$(TORCH_CHOICE))"
	$(if $(TORCH_FROM),$(PY) -m pip install --quiet $(foreach p,$(TORCH_PACKAGES),"$(p)") --index-url $(TORCH_FROM),)
	$(PY) -m pip install --quiet -e .
	@rm -rf $(VENV)/share/jupyter/kernels/course-kit  # an older kit's second, identical kernel
	@touch $(STAMP)
	@echo "course kit: environment ready in $(VENV)"

$(TEST_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e ".[test]"
	@touch $(TEST_STAMP)
	@echo "course kit: test tools added to $(VENV)"

# git stages notebooks without their outputs (course_lib/nbstrip.py; .gitattributes names the
# filter); the files on disk keep them. Only inside a git work tree; harmless to repeat. The
# filter command (git runs it with sh, in the work tree's top folder) uses $(VENV)'s python, or
# any python3 once that is gone (nbstrip needs only the standard library), or passes the file
# through unchanged (cat) where neither can run it: `make clean-venv` leaves no failing filter.
NBSTRIP_FILTER = if [ ! -f course_lib/nbstrip.py ]; then exec cat; \
  elif [ -x '$(abspath $(PY))' ]; then exec '$(abspath $(PY))' -m course_lib.nbstrip; \
  elif command -v python3 >/dev/null 2>&1; then exec python3 -m course_lib.nbstrip; \
  else exec cat; fi
git-filter: $(STAMP)
	@if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then \
	  git config filter.course-kit-nbstrip.clean "$(NBSTRIP_FILTER)" && \
	  echo "course kit: git stages notebooks without outputs (filter course-kit-nbstrip)"; \
	fi

# The course's new commits into a student's clone, keeping their edits (course_lib/update.py:
# stash, git pull, reapply; a conflict leaves their version in place and the course's beside it).
# Runs with .venv's python, or python3 when there is none; a new pyproject.toml reinstalls at the
# next `make lab`.
update:
	@$(if $(wildcard $(PY)),$(PY),$(PYTHON3)) -m course_lib.update

lab: $(STAMP) git-filter
	$(if $(THREADS),COURSE_THREADS=$(THREADS) ,)$(VENV)/bin/jupyter lab --ip=$(HOST) --port=$(PORT) \
	  $(if $(NO_BROWSER),--no-browser,) \
	  $(if $(TOKEN),--IdentityProvider.token=$(TOKEN),) \
	  $(if $(filter 0,$(shell id -u)),--allow-root,) \
	  --ServerApp.root_dir="$(CURDIR)" \
	  --ContentsManager.post_save_hook=course_lib.nbstrip.refresh_git_index \
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
#   [HUB_PREFIX=/opt/course-kit]: where what users' servers run is installed (never the checkout,
#   which holds the solutions: make hub refuses to start while other users can enter it)
HUB_IP   ?= 127.0.0.1
HUB_PREFIX ?=
HUB_PORT ?= 8000
HUB_AUTH ?= pam
STUDENTS ?=
INSTRUCTORS ?=
hub: $(STAMP)
	$(PY) -m pip install --quiet -e ".[hub]"
	$(PY) -m course_kit.hub serve --ip $(HUB_IP) --port $(HUB_PORT) --auth $(HUB_AUTH) \
	  --students "$(STUDENTS)" --instructors "$(INSTRUCTORS)" $(if $(HUB_PREFIX),--prefix $(HUB_PREFIX),)

# torchvision's ImageNet VGG-19 weights (548 MB) into its cache ($TORCH_HOME/hub/checkpoints):
# notebooks 06 and 07 then use them by themselves. Needs a network; offline it says what to do.
weights: $(STAMP)
	$(PY) -c "from course_lib.features import fetch_imagenet; fetch_imagenet()"
