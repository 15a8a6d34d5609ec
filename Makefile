# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# Built tools (kube-apiserver, etcd) and the Python venvs are cached outside the repo in $(CACHE).

CACHE ?= $(HOME)/.cache/eks-admin-sync
VENV := $(CACHE)/venv
PY := $(VENV)/bin/python
DEPLOY_VENV := $(CACHE)/sam-venv
DEPLOY_PY := $(DEPLOY_VENV)/bin/python
export EKS_SYNC_CACHE := $(CACHE)
# cargo-lambda finds zig through `python -m ziglang`: the deploy venv must come first on PATH for sam build.
DEPLOY_PATH := $(DEPLOY_VENV)/bin:$(PATH)

.PHONY: all build release deps venv deploy-venv k8s test unit e2e deploy-test policy-test package package-org demo bench lint fmt clean-cache mutants

all: build

# The binary with the features `cargo test` resolves (dev-dependencies unify some, e.g. tokio's): after `make unit`
# this builds nothing more, where a plain `cargo build` would compile those dependencies a second time. The
# deployed binary is the release build of `make package` (sam build), with the plain features.
build:
	cargo build --locked --bins --tests

release:
	cargo build --locked --release --bin eks-admin-sync --example hello_lambda

venv:
	tests/stack/setup-venv.sh

deploy-venv:
	tests/stack/setup-venv.sh $(DEPLOY_VENV) infra/requirements-deploy.txt

k8s:
	tests/stack/build-k8s.sh

deps: venv k8s

# Unit, property and scripted-API tests, and the simulation test (tests/sim: SIM_CASES histories, 2000 by default).
unit:
	cargo test --locked

# The simulation test must catch each fix listed in tests/sim/mutants.py taken out (the removal guard's per-source
# restrictions, node roles, the wake-up, audit, the admin-group member path); not in `make test`: one rebuild each.
mutants:
	python3 tests/sim/mutants.py

e2e: deps build
	$(PY) -m pytest -q tests/e2e

# Lint of both templates, template facts, the arm64 sam build, a deploy to the local CloudFormation.
deploy-test: deploy-venv venv
	PATH="$(DEPLOY_PATH)" $(DEPLOY_PY) -m pytest -q -s tests/deploy

# The IAM policies: every attack of the threat table evaluated with an IAM policy simulator (npm), the
# policies linted (parliament) and checked against the template.
policy-test: venv
	cd tests/policies && npm ci --no-audit --no-fund --loglevel=error && node --test
	$(PY) -m pytest -q tests/policies

# Unit, property and scripted-API tests, the end-to-end suite on the local stack, the policies, the deployment checks.
test: unit e2e policy-test deploy-test

demo: deps build
	$(PY) tests/stack/demo.py

package: deploy-venv
	PATH="$(DEPLOY_PATH)" SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=us-east-1 sam build --beta-features -t template.yaml

# For a CloudFormation StackSet (README, "Every account of an organization"): the template without the SAM
# transform, the code's zip, the forwarder and the central bus, in dist/org.
package-org: package
	AWS_DEFAULT_REGION=us-east-1 $(DEPLOY_PY) infra/package_org.py

bench: deps release package
	$(PY) tests/bench/bench.py

lint:
	cargo fmt --all -- --check
	cargo clippy --locked --all-targets -- -D warnings

fmt:
	cargo fmt --all

clean-cache:
	rm -rf $(CACHE)
