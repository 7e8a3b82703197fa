# Developer entry points. `make test` is what CI runs (.ci/run).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
# The AWS CLI v1 pins botocore to one release, which fights s3fs/aiobotocore's pin:
# it gets a virtualenv of its own, linked into $(VENV)/bin/aws.
AWSCLI_VENV := $(VENV)/awscli

.PHONY: install test demo clean

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

test: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m pytest -q

demo: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m torchdata_s3ext demo

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
