#!/usr/bin/env bash
# Builds kube-apiserver, etcd and the aws-auth parser helper from the Go module proxy into a cache outside the repo.
# Prints nothing but progress on stderr; the binaries land in $CACHE/bin. A second run is instant.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
AUTHENTICATOR_VERSION="${AUTHENTICATOR_VERSION:-v0.6.13}"
HERE="$(cd "$(dirname "$0")" && pwd)"
CACHE="${EKS_SYNC_CACHE:-$HOME/.cache/eks-admin-sync}"
BIN="$CACHE/bin"
mkdir -p "$BIN"

export GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0
# Keep Go's own caches in their usual place so they are shared with every other build on the machine.

log() { echo "[build-k8s] $*" >&2; }

build_apiserver() {
  local out="$BIN/kube-apiserver-$K8S_VERSION"
  if [ -x "$out" ]; then log "kube-apiserver $K8S_VERSION cached"; return; fi
  local dir="$CACHE/src/apiserver-$K8S_VERSION"
  rm -rf "$dir"; mkdir -p "$dir"; cd "$dir"
  local minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
  local patch="${K8S_VERSION##*.}"
  local staging="v0.${minor}.${patch}"
  log "resolving k8s.io/kubernetes $K8S_VERSION (staging modules at $staging)"
  go mod init local/apiserver-build >/dev/null 2>&1
  go mod edit -require="k8s.io/kubernetes@$K8S_VERSION"
  # Every staging module that kubernetes' own go.mod replaces with ./staging/... gets its published version.
  go mod download -json "k8s.io/kubernetes@$K8S_VERSION" >/dev/null
  local gomod
  gomod="$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/$K8S_VERSION.mod"
  local mods
  mods=$(awk '/=> \.\/staging\/src\// {print $1}' "$gomod" | sort -u)
  [ -n "$mods" ] || { log "no staging modules found in $gomod"; exit 1; }
  for m in $mods; do
    go mod edit -replace="$m=$m@$staging"
  done
  cat > tools.go <<'GO'
//go:build tools

package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
GO
  log "downloading modules and building kube-apiserver (first time: 10-20 min on 2 cores)"
  go mod tidy >/dev/null 2>&1 || true
  local vpkg="k8s.io/component-base/version" cpkg="k8s.io/client-go/pkg/version"
  local ld="-s -w"
  for p in $vpkg $cpkg; do
    ld="$ld -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
  done
  go build -tags tools -ldflags "$ld" -o "$out.tmp" k8s.io/kubernetes/cmd/kube-apiserver
  mv "$out.tmp" "$out"
  log "built $out"
}

build_etcd() {
  local out="$BIN/etcd-$ETCD_VERSION"
  if [ -x "$out" ]; then log "etcd $ETCD_VERSION cached"; return; fi
  local dir="$CACHE/src/etcd-$ETCD_VERSION"
  rm -rf "$dir"; mkdir -p "$dir"; cd "$dir"
  log "building etcd $ETCD_VERSION"
  go mod init local/etcd-build >/dev/null 2>&1
  go mod edit -require="go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  cat > tools.go <<'GO'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
GO
  go mod tidy >/dev/null 2>&1 || true
  go build -tags tools -ldflags "-s -w" -o "$out.tmp" go.etcd.io/etcd/server/v3
  mv "$out.tmp" "$out"
  log "built $out"
}

# aws-iam-authenticator's own aws-auth parser (pkg/mapper/configmap.ParseMap, what EKS runs) behind a small
# command of ours (tests/stack/awsauth-parse/main.go): the local authenticator reads aws-auth through it.
build_authparser() {
  local out="$BIN/awsauth-parse-$AUTHENTICATOR_VERSION"
  local src="$HERE/awsauth-parse/main.go"
  local stamp
  stamp="$(sha256sum "$src" | cut -c1-12)"
  if [ -x "$out" ] && [ "$(cat "$out.src" 2>/dev/null)" = "$stamp" ]; then
    log "awsauth-parse (aws-iam-authenticator $AUTHENTICATOR_VERSION) cached"; return
  fi
  local dir="$CACHE/src/awsauth-parse-$AUTHENTICATOR_VERSION"
  rm -rf "$dir"; mkdir -p "$dir"; cd "$dir"
  log "building awsauth-parse with aws-iam-authenticator $AUTHENTICATOR_VERSION"
  go mod init local/awsauth-parse >/dev/null 2>&1
  go mod edit -require="sigs.k8s.io/aws-iam-authenticator@$AUTHENTICATOR_VERSION"
  cp "$src" main.go
  go mod tidy >/dev/null 2>&1 || true
  go build -ldflags "-s -w" -o "$out.tmp" .
  mv "$out.tmp" "$out"
  echo "$stamp" > "$out.src"
  log "built $out"
}

case "${1:-all}" in
  etcd) build_etcd ;;
  apiserver) build_apiserver ;;
  authparser) build_authparser ;;
  all) build_etcd; build_apiserver; build_authparser ;;
  *) echo "usage: $0 [all|etcd|apiserver|authparser]" >&2; exit 2 ;;
esac
