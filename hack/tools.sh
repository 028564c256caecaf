#!/usr/bin/env bash
# Build every tool the local cluster needs, at pinned versions, from the Go module proxy,
# into a cache outside the repository keyed by version. A second run returns in seconds.
#
#   hack/tools.sh            build what is missing, print the bin directory
#   hack/tools.sh --check    exit 1 if anything is missing (no build)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
# shellcheck source=versions.env
source "$HERE/versions.env"

CACHE="${RIGHTSIZER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/gpu-rightsizer}"
BIN="$CACHE/bin"
mkdir -p "$BIN" "$CACHE/build"
# One build at a time per cache: the demo, the tests and a second shell may all start here on a fresh
# machine, and two builds of one tool into one directory waste the cores and race on the output.
exec 9>"$CACHE/.tools.lock"
flock 9

log() { printf '[tools] %s\n' "$*" >&2; }
die() { printf '[tools] ERROR: %s\n' "$*" >&2; exit 1; }

command -v go >/dev/null || die "go is not installed; install Go >= 1.26 (it builds every cluster binary)"

export CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=local

# stamp DIR — a tool built at a version lives in $BIN/<name>-<version>/ and is linked as $BIN/<name>
have() { [ -x "$BIN/$1-$2/$1" ]; }

link() { # link NAME VERSION
  ln -sfn "$1-$2/$1" "$BIN/$1"
}

wrapper() { # wrapper DIR MODULE VERSION "PKG ..." [replace lines...]
  local dir="$1" mod="$2" ver="$3" pkgs="$4" pkg; shift 4
  rm -rf "$dir"; mkdir -p "$dir"
  {
    echo "module rightsizer.local/toolbuild"
    echo
    echo "go 1.26.0"
    echo
    echo "require $mod $ver"
    for r in "$@"; do echo "replace $r"; done
  } >"$dir/go.mod"
  # The packages to build, imported under a build tag that is never set: `go mod tidy` then resolves
  # exactly their dependencies (a main package may be imported this way, never compiled).
  {
    printf '//go:build tools\n\npackage tools\n\nimport (\n'
    for pkg in $pkgs; do printf '\t_ "%s"\n' "$pkg"; done
    printf ')\n'
  } >"$dir/tools.go"
}

tidy() { # tidy DIR — resolve the wrapper's dependencies; a failure stops the build with go's words
  (cd "$1" && go mod tidy >"$1/tidy.log" 2>&1) || die "go mod tidy failed in $1:
$(tail -n 20 "$1/tidy.log")"
}

build_kube() {
  local names=(kube-apiserver kube-controller-manager kube-scheduler kubectl) missing=0 n
  for n in "${names[@]}"; do have "$n" "$KUBE_VERSION" || missing=1; done
  if [ "$missing" = 1 ]; then
    log "building Kubernetes $KUBE_VERSION (kube-apiserver, kube-controller-manager, kube-scheduler, kubectl); cold builds take 20-40 minutes on 2 cores"
    local dir="$CACHE/build/kubernetes-$KUBE_VERSION" minor staging=() s
    minor="v0.${KUBE_VERSION#v1.}"
    # The staging modules k8s.io/kubernetes replaces with ./staging paths: read them from its go.mod.
    local modfile; modfile="$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
    [ -f "$modfile" ] || die "could not download k8s.io/kubernetes@$KUBE_VERSION from the Go module proxy"
    while read -r s; do staging+=("$s => $s $minor"); done < <(awk '$2=="=>" && $3 ~ /^\.\/staging/ {print $1}' "$modfile")
    [ "${#staging[@]}" -gt 10 ] || die "found no staging modules in k8s.io/kubernetes go.mod"
    local cmds="k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager"
    cmds+=" k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl"
    wrapper "$dir" k8s.io/kubernetes "$KUBE_VERSION" "$cmds" "${staging[@]}"
    tidy "$dir"
    local now; now="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    local major=1 kminor="${KUBE_VERSION#v1.}"; kminor="${kminor%%.*}"
    local ld="-s -w"
    for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ld+=" -X $p.gitVersion=$KUBE_VERSION -X $p.gitMajor=$major -X $p.gitMinor=$kminor"
      ld+=" -X $p.gitTreeState=clean -X $p.buildDate=$now -X $p.gitCommit=0000000000000000000000000000000000000000"
    done
    (
      cd "$dir"
      local out="$dir/out"; mkdir -p "$out"
      # shellcheck disable=SC2086 # one word per package
      go build -trimpath -ldflags "$ld" -o "$out/" $cmds
      for n in "${names[@]}"; do mkdir -p "$BIN/$n-$KUBE_VERSION"; mv "$out/$n" "$BIN/$n-$KUBE_VERSION/$n"; done
    ) || die "building Kubernetes $KUBE_VERSION failed (see the go output above); re-run hack/tools.sh to retry"
  fi
  for n in "${names[@]}"; do link "$n" "$KUBE_VERSION"; done
}

build_simple() { # build_simple MODULE VERSION "pkg:name ..." [LDFLAGS [MODULE...]]
  # LDFLAGS are added to "-s -w"; each further MODULE is required at VERSION too.
  local mod="$1" ver="$2" pairs="$3" ldflags="-s -w ${4:-}" missing=0 pair m
  shift 3; [ "$#" -gt 0 ] && shift
  for pair in $pairs; do have "${pair#*:}" "$ver" || missing=1; done
  if [ "$missing" = 1 ]; then
    log "building $mod $ver"
    local dir
    dir="$CACHE/build/$(basename "$mod")-$ver"
    wrapper "$dir" "$mod" "$ver" "$(for pair in $pairs; do printf '%s ' "${pair%%:*}"; done)"
    for m in "$@"; do echo "require $m $ver" >>"$dir/go.mod"; done
    tidy "$dir"
    (
      cd "$dir"
      for pair in $pairs; do
        local pkg="${pair%%:*}" name="${pair#*:}"
        mkdir -p "$BIN/$name-$ver"
        go build -trimpath -ldflags "$ldflags" -o "$BIN/$name-$ver/$name" "$pkg"
      done
    ) || die "building $mod $ver failed (see the go output above)"
  fi
  for pair in $pairs; do link "${pair#*:}" "$ver"; done
}

fetch_crds() { # fetch_crds MODULE VERSION DIR NAME — a module's CRD YAML into $CACHE/crds/NAME-VERSION
  local dest="$CACHE/crds/$4-$2"
  [ -d "$dest" ] && return 0
  log "fetching the CRDs of $1 $2"
  local json src
  json="$(cd "$CACHE/build" && go mod download -json "$1@$2")" || die "could not download $1 $2: $json"
  src="$(sed -n 's/.*"Dir": "\(.*\)".*/\1/p' <<<"$json")"
  [ -d "$src/$3" ] || die "no $3 in $1 $2: $json"
  rm -rf "$dest.tmp"; mkdir -p "$dest.tmp"
  cp "$src/$3"/*.yaml "$dest.tmp/" && mv "$dest.tmp" "$dest"
}

build_karpenter() {
  # Karpenter's kwok provider binary is called kwok, like kwok's own controller: cached as karpenter-kwok.
  if ! have karpenter-kwok "$KARPENTER_VERSION"; then
    log "building Karpenter's kwok provider $KARPENTER_VERSION (under $KARPENTER_GO_TOOLCHAIN, fetched by go)"
    local out="$CACHE/build/karpenter-$KARPENTER_VERSION/bin"
    rm -rf "$out"; mkdir -p "$out" "$BIN/karpenter-kwok-$KARPENTER_VERSION"
    (cd "$CACHE/build" && GOTOOLCHAIN="$KARPENTER_GO_TOOLCHAIN" GOBIN="$out" \
      go install -trimpath -ldflags "-s -w" "sigs.k8s.io/karpenter/kwok@$KARPENTER_VERSION") \
      || die "building Karpenter $KARPENTER_VERSION failed (see the go output above)"
    mv "$out/kwok" "$BIN/karpenter-kwok-$KARPENTER_VERSION/karpenter-kwok"
  fi
  link karpenter-kwok "$KARPENTER_VERSION"
  GOTOOLCHAIN="$KARPENTER_GO_TOOLCHAIN" fetch_crds sigs.k8s.io/karpenter "$KARPENTER_VERSION" kwok/charts/crds karpenter
  GOTOOLCHAIN="$KARPENTER_GO_TOOLCHAIN" fetch_crds sigs.k8s.io/karpenter "$KARPENTER_VERSION" kwok/apis/crds karpenter-kwok
}

build_kueue() {
  # Kueue's manager, run by the Kueue e2e tests as a local process against the test cluster.
  if ! have kueue "$KUEUE_VERSION"; then
    log "building Kueue's manager $KUEUE_VERSION"
    local out="$CACHE/build/kueue-$KUEUE_VERSION/bin"
    rm -rf "$out"; mkdir -p "$out" "$BIN/kueue-$KUEUE_VERSION"
    (cd "$CACHE/build" && GOBIN="$out" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kueue/cmd/kueue@$KUEUE_VERSION") \
      || die "building Kueue $KUEUE_VERSION failed (see the go output above)"
    mv "$out/kueue" "$BIN/kueue-$KUEUE_VERSION/kueue"
  fi
  link kueue "$KUEUE_VERSION"
  # Its webhook configurations, which the tests install as its manifests do.
  fetch_crds sigs.k8s.io/kueue "$KUEUE_VERSION" config/components/webhook kueue-webhook
}

fetch_clusterapi_crds() { # Cluster API's MachineDeployment, MachineSet and Machine CRDs, from its module
  local dest="$CACHE/crds/cluster-api-$CLUSTER_API_VERSION" plural
  if [ "$check_only" = 1 ]; then
    [ -d "$dest" ] || { log "missing CRDs cluster-api-$CLUSTER_API_VERSION"; exit 1; }
    return 0
  fi
  [ -d "$dest" ] && return 0
  log "fetching the CRDs of sigs.k8s.io/cluster-api $CLUSTER_API_VERSION"
  local json src
  json="$(cd "$CACHE/build" && go mod download -json "sigs.k8s.io/cluster-api@$CLUSTER_API_VERSION")" \
    || die "could not download sigs.k8s.io/cluster-api $CLUSTER_API_VERSION: $json"
  src="$(sed -n 's/.*"Dir": "\(.*\)".*/\1/p' <<<"$json")/config/crd/bases"
  rm -rf "$dest.tmp"; mkdir -p "$dest.tmp"
  # Only the kinds the provider touches: the rest (Cluster, MachinePool, ...) would be noise.
  for plural in machinedeployments machinesets machines; do
    cp "$src/cluster.x-k8s.io_$plural.yaml" "$dest.tmp/" || die "no $plural CRD in cluster-api $CLUSTER_API_VERSION"
  done
  mv "$dest.tmp" "$dest"
}

PROMETHEUS_MODULE_VERSION="$(IFS=. read -r maj min pat <<<"${PROMETHEUS_VERSION#v}"; printf 'v0.%d%02d.%d' "$maj" "$min" "$pat")"

check_only=0
[ "${1:-}" = "--check" ] && check_only=1

fetch_clusterapi_crds
if [ "$check_only" = 1 ]; then
  for pair in kube-apiserver:$KUBE_VERSION kube-controller-manager:$KUBE_VERSION kube-scheduler:$KUBE_VERSION \
              kubectl:$KUBE_VERSION etcd:$ETCD_VERSION kwok:$KWOK_VERSION kwokctl:$KWOK_VERSION helm:$HELM_VERSION \
              prometheus-operator:$PROMETHEUS_OPERATOR_VERSION prometheus-upstream:$PROMETHEUS_MODULE_VERSION \
              karpenter-kwok:$KARPENTER_VERSION kueue:$KUEUE_VERSION; do
    have "${pair%%:*}" "${pair#*:}" || { log "missing ${pair%%:*} ${pair#*:}"; exit 1; }
  done
  for crds in "prometheus-operator-$PROMETHEUS_OPERATOR_VERSION" "karpenter-$KARPENTER_VERSION" "karpenter-kwok-$KARPENTER_VERSION" \
              "kuberay-$KUBERAY_VERSION" "training-operator-$TRAINING_OPERATOR_VERSION" "trainer-$TRAINER_VERSION" \
              "kserve-$KSERVE_VERSION" "kueue-$KUEUE_VERSION" "kueue-webhook-$KUEUE_VERSION" \
              "knative-serving-$KNATIVE_SERVING_VERSION"; do
    [ -d "$CACHE/crds/$crds" ] || { log "missing CRDs $crds"; exit 1; }
  done
  echo "$BIN"; exit 0
fi

build_simple sigs.k8s.io/kwok "$KWOK_VERSION" "sigs.k8s.io/kwok/cmd/kwok:kwok sigs.k8s.io/kwok/cmd/kwokctl:kwokctl"
build_simple go.etcd.io/etcd/server/v3 "$ETCD_VERSION" "go.etcd.io/etcd/server/v3:etcd"
# helm stamped as its release build is: its version, and the Kubernetes its client-go speaks, which
# `helm template` and `helm lint` assume without --kube-version (unstamped, v1.20).
helm_ldflags() {
  local gomod minor flags p
  gomod="$(cd "$CACHE/build" && go mod download -json "helm.sh/helm/v3@$HELM_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
  minor="$(awk '$1 == "k8s.io/client-go" {print $2}' "$gomod" | cut -d. -f2)"
  [ -n "$minor" ] || die "no k8s.io/client-go in helm $HELM_VERSION's go.mod"
  flags="-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.metadata="
  for p in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    flags+=" -X $p.k8sVersionMajor=1 -X $p.k8sVersionMinor=$minor"
  done
  echo "$flags"
}
# A helm cached before it was stamped does not know its own version: build it again.
if have helm "$HELM_VERSION" && [ "$("$BIN/helm-$HELM_VERSION/helm" version --template '{{.Version}}')" != "$HELM_VERSION" ]; then
  rm -rf "${BIN:?}/helm-$HELM_VERSION"
fi
build_simple helm.sh/helm/v3 "$HELM_VERSION" "helm.sh/helm/v3/cmd/helm:helm" "$(helm_ldflags)"
build_kube
# prometheus-operator's go.mod replaces its sub-modules with ./pkg paths, so `go install` refuses it:
# the wrapper requires them at the same version. The version is stamped as its Makefile does (the
# default config-reloader image is tagged with it).
PO=github.com/prometheus-operator/prometheus-operator
build_simple "$PO" "$PROMETHEUS_OPERATOR_VERSION" "$PO/cmd/operator:prometheus-operator" \
  "-X github.com/prometheus/common/version.Version=${PROMETHEUS_OPERATOR_VERSION#v}" \
  "$PO/pkg/apis/monitoring" "$PO/pkg/client"
fetch_crds github.com/prometheus-operator/prometheus-operator "$PROMETHEUS_OPERATOR_VERSION" \
  example/prometheus-operator-crd prometheus-operator
# The workload kinds' real schemas (CRDs only; their controllers are played by the tests, but for
# Kueue's, built below).
fetch_crds github.com/ray-project/kuberay/ray-operator "$KUBERAY_VERSION" config/crd/bases kuberay
fetch_crds github.com/kubeflow/training-operator "$TRAINING_OPERATOR_VERSION" manifests/base/crds \
  training-operator
fetch_crds github.com/kubeflow/trainer/v2 "$TRAINER_VERSION" manifests/base/crds trainer
fetch_crds github.com/kserve/kserve "$KSERVE_VERSION" config/crd/full kserve
fetch_crds sigs.k8s.io/kueue "$KUEUE_VERSION" config/components/crd/bases kueue
fetch_crds knative.dev/serving "$KNATIVE_SERVING_VERSION" config/core/300-resources knative-serving
# Debian's prometheus (the cluster's, below) has no Kubernetes service discovery: the e2e tests that run
# the scrape jobs prometheus-operator generates need upstream's. Linked as prometheus-upstream, so
# the cluster keeps Debian's. Its Go module is versioned v0.<major><minor>.<patch> (3.5.0 is v0.305.0).
build_simple github.com/prometheus/prometheus "$PROMETHEUS_MODULE_VERSION" \
  "github.com/prometheus/prometheus/cmd/prometheus:prometheus-upstream" \
  "-X github.com/prometheus/common/version.Version=${PROMETHEUS_VERSION#v}"
build_karpenter
build_kueue

# From Debian's packages: Prometheus for the cluster, iproute2 for the e2e tests' own test hosts
# (network namespaces), shellcheck for the static checks.
missing=()
command -v prometheus >/dev/null || [ -x /usr/bin/prometheus ] || missing+=(prometheus)
command -v ip >/dev/null || [ -x /usr/sbin/ip ] || missing+=(iproute2)
command -v shellcheck >/dev/null || missing+=(shellcheck)  # the test command checks hack/
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing ${missing[*]} from Debian's packages"
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null) \
      || die "apt-get install ${missing[*]} failed"
  else
    die "missing ${missing[*]}: run 'sudo apt-get install ${missing[*]}' (Debian/Ubuntu) and retry"
  fi
  # Debian starts the Prometheus it installs as a service on :9090; ours runs on other ports. Only
  # the service this run installed is stopped: a Prometheus the host already had is left alone.
  if [[ " ${missing[*]} " == *" prometheus "* ]] && command -v systemctl >/dev/null 2>&1; then
    systemctl stop prometheus >/dev/null 2>&1 || log "note: could not stop the prometheus service Debian started"
  fi
fi

echo "$BIN"
