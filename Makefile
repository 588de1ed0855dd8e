# By-hand tasks. The two set-up commands at the top of README.md do the same as `venv`/`test`
# without make; .ci/run runs the README's test command.
PYTHON ?= python3
VENV ?= .venv
NEWEST ?= .venv-newest
LOCK := requirements/lock.txt

.PHONY: venv test lock test-newest

# The project and its test extras at the locked versions.
venv:
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -c $(LOCK) -e '.[test]'

test: venv
	$(VENV)/bin/python -m pytest

# Rewrite requirements/lock.txt with pip-compile in a throwaway venv (LOCK_ARGS=--upgrade: newest versions).
lock:
	PYTHON=$(PYTHON) bash scripts/lock.sh $(LOCK_ARGS)

# The whole suite against the newest versions pyproject.toml allows (no lock), in a fresh venv.
test-newest:
	rm -rf $(NEWEST)
	$(PYTHON) -m venv $(NEWEST)
	$(NEWEST)/bin/pip install --upgrade --upgrade-strategy eager -e '.[test]'
	$(NEWEST)/bin/pip freeze --all --exclude-editable | $(PYTHON) scripts/lock_diff.py $(LOCK)
	$(NEWEST)/bin/python -m pytest
