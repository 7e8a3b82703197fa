# Developer entry points. `make test` is what CI runs (.ci/run).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
# The AWS CLI v1 pins botocore to one release, which fights s3fs/aiobotocore's pin:
# it gets a virtualenv of its own, linked into $(VENV)/bin/aws.
AWSCLI_VENV := $(VENV)/awscli

.PHONY: install check-install test demo clean

install: $(STAMP)

$(STAMP): setup.cfg setup.py constraints-dev.txt
	$(PYTHON) -m venv $(VENV)
	# torch first, from the pinned CPU wheel: a bare `torch` would pull CUDA.
	$(PY) -m pip install -c constraints-dev.txt torch==2.13.0
	$(PY) -m pip install -c constraints-dev.txt -e '.[test,bench,s3torchconnector]'
	$(PYTHON) -m venv $(AWSCLI_VENV)
	$(AWSCLI_VENV)/bin/python -m pip install 'awscli>=1.29'
	ln -sf "$(CURDIR)/$(AWSCLI_VENV)/bin/aws" $(VENV)/bin/aws
	touch $@

# Installs the package the way a user does: a fresh virtualenv with the pip it ships, torch first,
# then this checkout with plain pip and no constraints file. It fails when pip has to backtrack,
# which is how setup.cfg's botocore family falling out of step with new releases shows first.
check-install:
	@set -eu; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(PYTHON) -m venv "$$tmp/venv"; \
	"$$tmp/venv/bin/python" -m pip install torch==2.13.0 >"$$tmp/torch.log" 2>&1 || { cat "$$tmp/torch.log"; exit 1; }; \
	"$$tmp/venv/bin/python" -m pip install "$(CURDIR)" >"$$tmp/pip.log" 2>&1 || { cat "$$tmp/pip.log"; exit 1; }; \
	if grep -E 'looking at multiple versions|taking longer than usual' "$$tmp/pip.log"; then \
		echo "check-install: pip backtracked; give it one matching set of versions in setup.cfg" >&2; exit 1; \
	fi; \
	"$$tmp/venv/bin/python" -m pip check; \
	cd "$$tmp" && "$$tmp/venv/bin/python" -c "import torchdata_s3ext; print('check-install: torchdata_s3ext', torchdata_s3ext.__version__)"

test: $(STAMP) check-install
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m pytest -q

demo: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m torchdata_s3ext demo

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
