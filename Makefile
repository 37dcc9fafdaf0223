# The two commands of the README:
#   make book   builds the website into _build/html, installing only what that needs
#               (no PyTorch: the site shows the outputs stored in the notebooks)
#   make test   runs the whole test suite, installing everything
PYTHON ?= python3
PIP := $(PYTHON) -m pip
# torch==2.13.0 first, pinned, so that nothing pulls another version. From PyPI on
# Linux that is the CUDA build (gigabytes); for the CPU-only build set
# TORCH_INDEX=https://download.pytorch.org/whl/cpu.
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
TORCH_PIP := $(TORCH) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
LMBOOK_DATA_DIR ?= $(abspath $(CURDIR)/../shared/data)
export LMBOOK_DATA_DIR
NBVAL := --nbval --nbval-current-env --nbval-sanitize-with nbval_sanitize.cfg

.PHONY: install-book install mathjax book student chromium lint test clean

install-book:
	$(PIP) install -q --disable-pip-version-check -r requirements-book.txt

install:
	$(PIP) install -q --disable-pip-version-check $(TORCH_PIP)
	$(PIP) install -q --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
	$(PIP) install -q --disable-pip-version-check --no-deps -e .

# The site serves MathJax itself, so equations render offline: npm's mathjax,
# pinned in package.json and package-lock.json (tools/lmbook_site.py copies it into
# the site). Node and npm come from Debian when run as root.
MATHJAX := node_modules/mathjax/es5/tex-mml-chtml.js
mathjax: $(MATHJAX)
$(MATHJAX): package.json package-lock.json
	@if ! command -v npm >/dev/null; then \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; \
		else echo "npm is missing: sudo apt-get install nodejs npm"; exit 1; fi; fi
	npm ci --no-audit --no-fund
	touch $@

book: install-book mathjax
	jupyter-book build . -W -n --keep-going

# The student edition, for teachers to hand out: the same site without the
# solutions (every exercise stays), into _build/student/html.
student: install-book mathjax
	$(PYTHON) tools/build_student.py

# Debian's chromium for the browser tests (Playwright cannot download browsers here),
# and Noto CJK, which the tests check draws the glossary's Chinese terms.
BROWSER_PKGS := chromium fonts-noto-cjk
chromium:
	@missing="$$(for p in $(BROWSER_PKGS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done)"; \
	if [ -z "$$missing" ]; then echo "browser tests: $(BROWSER_PKGS) installed"; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else echo "missing: sudo apt-get install $$missing (the tests that need it skip)"; fi

lint:
	ruff check lmbook tests tools conftest.py $(wildcard bench)

test: install chromium lint book student
	$(PYTHON) -m pytest -p no:cacheprovider tests chapters $(NBVAL) --durations=15

# Stored outputs and tolerances must not depend on the CPU (Intel or AMD, AVX2 or
# AVX-512) or on the thread count. Not part of `make test`: it runs the unit tests
# and every chapter twice, as if on other machines: with PyTorch's portable kernels
# (no AVX2), then with one thread (another reduction order). The browser tests
# draw stored outputs, so they are left out.
PORTABLE := $(PYTHON) -m pytest -p no:cacheprovider -m "not browser" tests chapters $(NBVAL)
.PHONY: test-portable
test-portable: install
	ATEN_CPU_CAPABILITY=default $(PORTABLE)
	OMP_NUM_THREADS=1 $(PORTABLE)

# Reader environments, each built from nothing the way readers get it. Not part of
# `make test` (each makes a fresh virtual environment and downloads its packages:
# minutes); run them before a release, or after changing dependencies or binder/.
#   test-colab   Colab's set-up cell: `pip install "lmbook[hf,widgets]"`, with no
#                requirements file, so the extras must declare everything a chapter
#                imports. The chapters run copied alone into an empty folder, as
#                on Colab, where there is no checkout beside them.
#   test-binder  binder/ alone: binder/requirements.txt, then binder/postBuild,
#                then every chapter.
READERS ?= /tmp/lmbook-readers
# Between them these import every third-party package the chapters use (Part V:
# datasets, tokenizers, peft, trl, onnx, onnxruntime and scikit-learn).
COLAB_CHAPTERS ?= chapters/02-core-concepts/attention-in-a-real-model.ipynb \
	chapters/02-core-concepts/language-models.ipynb \
	chapters/05-practice/tokenizers-and-datasets.ipynb \
	chapters/05-practice/lora-and-dpo.ipynb \
	chapters/05-practice/making-models-small.ipynb \
	chapters/05-practice/sentence-embeddings.ipynb
NBVAL_PKGS := "pytest>=8" nbval==0.11.0
BINDER_PYTHON ?= python$(subst python-,,$(strip $(file <binder/runtime.txt)))
.PHONY: test-colab test-binder
test-colab:
	rm -rf $(READERS)/colab && $(PYTHON) -m venv $(READERS)/colab/venv
	$(READERS)/colab/venv/bin/pip install -q $(TORCH_PIP)
	$(READERS)/colab/venv/bin/pip install -q ".[hf,widgets]"
	$(READERS)/colab/venv/bin/pip install -q $(NBVAL_PKGS)
	mkdir $(READERS)/colab/content
	cp $(COLAB_CHAPTERS) nbval_sanitize.cfg $(READERS)/colab/content/
	cd $(READERS)/colab/content && ../venv/bin/python -m pytest -p no:cacheprovider \
		$(NBVAL) --durations=5 .

test-binder:
	rm -rf $(READERS)/binder && $(BINDER_PYTHON) -m venv $(READERS)/binder
	$(READERS)/binder/bin/pip install -q -r binder/requirements.txt
	PATH=$(READERS)/binder/bin:$$PATH bash binder/postBuild
	$(READERS)/binder/bin/pip install -q $(NBVAL_PKGS)
	$(READERS)/binder/bin/python -m pytest -p no:cacheprovider chapters $(NBVAL) \
		--durations=15

clean:
	rm -rf _build
