# Developer entry points. `make test` is what CI runs (.ci/run).
PYTHON ?= python3
# The main virtualenv holds the current torchdata (0.11: torchdata.nodes, StatefulDataLoader); a second one
# holds torchdata 0.9 (datapipes, DataLoader2, the native S3 handler), for the tests of what differs there.
VENV   ?= .venv
VENV09 ?= .venv-td09
PY     := $(VENV)/bin/python
PY09   := $(VENV09)/bin/python
STAMP  := $(VENV)/.installed-stamp
STAMP09 := $(VENV09)/.installed-stamp
# The AWS CLI v1 pins botocore to one release, which fights s3fs/aiobotocore's pin:
# it gets a virtualenv of its own, linked into each virtualenv's bin/aws.
AWSCLI_VENV := .venv-awscli
AWSCLI_STAMP := $(AWSCLI_VENV)/.installed-stamp
# What runs again under torchdata 0.9, where it differs: DataLoader2 (every test marked for it), its
# StatefulDataLoader under checkpoints and kills, its load_from_tar under our grouping, the README, the bench's
# methods on torchdata's openers, and the backend that exists there only (torchdata's native S3 handler).
TD09_TESTS := tests/e2e/test_checkpoint_loaders.py tests/e2e/test_distributed.py tests/epochs/test_checkpoint_state.py \
	tests/test_readme.py tests/samples/test_wds.py tests/s3/test_open_s3.py tests/test_layout.py tests/test_examples.py

# Tests run in this many processes (pytest-xdist): most of their time is spent waiting on servers and children.
TEST_PROCESSES ?= 2

.PHONY: install install-td09 check-install test demo clean

install: $(STAMP)

install-td09: $(STAMP09)

$(AWSCLI_STAMP):
	$(PYTHON) -m venv $(AWSCLI_VENV)
	$(AWSCLI_VENV)/bin/python -m pip install 'awscli>=1.29'
	touch $@

$(STAMP): setup.cfg setup.py constraints-dev.txt $(AWSCLI_STAMP)
	$(PYTHON) -m venv $(VENV)
	# torch first, from the pinned CPU wheel: a bare `torch` would pull CUDA.
	$(PY) -m pip install -c constraints-dev.txt torch==2.13.0 torchdata==0.11.0
	$(PY) -m pip install -c constraints-dev.txt -e '.[test,bench,all]'
	ln -sf "$(CURDIR)/$(AWSCLI_VENV)/bin/aws" $(VENV)/bin/aws
	touch $@

$(STAMP09): setup.cfg setup.py constraints-dev.txt $(AWSCLI_STAMP)
	$(PYTHON) -m venv $(VENV09)
	$(PY09) -m pip install -c constraints-dev.txt torch==2.13.0 torchdata==0.9.0
	$(PY09) -m pip install -c constraints-dev.txt -e '.[test,bench,all]'
	ln -sf "$(CURDIR)/$(AWSCLI_VENV)/bin/aws" $(VENV09)/bin/aws
	touch $@

# Installs the checkout as a user does (plain pip, no constraints file) into fresh virtualenvs: alone, and
# beside torchdata 0.9 or 0.11 and the newest boto3, whose versions it must leave as they were.
check-install:
	.ci/check-install $(PYTHON) "$(CURDIR)"

test: $(STAMP) $(STAMP09) check-install
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m pytest -q -n $(TEST_PROCESSES)
	PATH="$(CURDIR)/$(VENV09)/bin:$$PATH" $(PY09) -m pytest -q -p no:cacheprovider -n $(TEST_PROCESSES) $(TD09_TESTS)
	PATH="$(CURDIR)/$(VENV09)/bin:$$PATH" $(PY09) -m pytest -q -p no:cacheprovider -m dataloader2 tests
	PATH="$(CURDIR)/$(VENV09)/bin:$$PATH" $(PY09) -m pytest -q -p no:cacheprovider tests/samples/test_hostile_tars.py -k load_from_tar
	PATH="$(CURDIR)/$(VENV09)/bin:$$PATH" $(PY09) -m pytest -q -p no:cacheprovider tests/s3 tests/samples tests/writing/test_shard_writer_s3.py -k s3fileloader
	PATH="$(CURDIR)/$(VENV09)/bin:$$PATH" $(PY09) -m pytest -q -p no:cacheprovider tests/tools/test_cli.py -k 'own_server or s3like'

demo: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m torchdata_s3ext demo

clean:
	rm -rf $(VENV) $(VENV09) $(AWSCLI_VENV) build *.egg-info .pytest_cache
