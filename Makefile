# The two commands of the README:
#   make book   builds the website into _build/html, installing what it needs
#   make test   runs the whole test suite, installing what it needs
PYTHON ?= python3
PIP := $(PYTHON) -m pip
# torch==2.13.0 first: an unpinned torch would pull gigabytes of CUDA packages.
TORCH ?= torch==2.13.0
LMBOOK_DATA_DIR ?= $(abspath $(CURDIR)/../shared/data)
export LMBOOK_DATA_DIR
NBVAL := --nbval --nbval-current-env --nbval-sanitize-with nbval_sanitize.cfg

.PHONY: install book chromium lint test clean

install:
	$(PIP) install -q --disable-pip-version-check $(TORCH)
	$(PIP) install -q --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
	$(PIP) install -q --disable-pip-version-check --no-deps -e .

book: install
	jupyter-book build . -W -n --keep-going

# Debian's chromium for the browser tests (Playwright cannot download browsers here).
chromium:
	@if [ -x /usr/bin/chromium ]; then echo "chromium: /usr/bin/chromium"; \
	elif [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else echo "chromium is missing: sudo apt-get install chromium (browser tests will skip)"; fi

lint:
	ruff check lmbook tests tools conftest.py $(wildcard bench)

test: install chromium lint book
	$(PYTHON) -m pytest -p no:cacheprovider tests chapters $(NBVAL) --durations=15

clean:
	rm -rf _build
