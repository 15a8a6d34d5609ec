# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# Built tools (kube-apiserver, etcd) and the Python venv are cached outside the repo in $(CACHE).

CACHE ?= $(HOME)/.cache/eks-admin-sync
VENV := $(CACHE)/venv
PY := $(VENV)/bin/python
export EKS_SYNC_CACHE := $(CACHE)

.PHONY: all build deps venv k8s test unit e2e demo lint fmt clean-cache

all: build

build:
	cargo build --locked

venv:
	tests/stack/setup-venv.sh

k8s:
	tests/stack/build-k8s.sh

deps: venv k8s

unit:
	cargo test --locked

e2e: deps build
	$(PY) -m pytest -q tests/e2e

# Unit, property and scripted-API tests, then the end-to-end suite on the local stack.
test: unit e2e

demo: deps build
	$(PY) tests/stack/demo.py

lint:
	cargo fmt --all -- --check
	cargo clippy --locked --all-targets -- -D warnings

fmt:
	cargo fmt --all

clean-cache:
	rm -rf $(CACHE)
