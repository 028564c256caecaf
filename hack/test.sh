#!/usr/bin/env bash
# The whole test suite: static checks, unit tests, and e2e tests against a real control plane.
#
# RIGHTSIZER_TEST_CLUSTER=local (default) starts the local cluster when it is not running and stops it
# afterwards if this script started it; `kind` / `existing` use the current kubeconfig (see README).
# Extra arguments go to pytest, e.g. `hack/test.sh -k smoke`.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
cd "$ROOT"
MODE="${RIGHTSIZER_TEST_CLUSTER:-local}"
started=0

if [ "$MODE" = local ]; then
  # Tests get a cluster of their own, beside the demo's (which `make demo` leaves up for exploring),
  # so neither sees the other's workloads or consolidated nodes.
  export RIGHTSIZER_CLUSTER_NAME="${RIGHTSIZER_CLUSTER_NAME:-rightsizer-test}"
  export RIGHTSIZER_APISERVER_PORT="${RIGHTSIZER_APISERVER_PORT:-26443}"
  export RIGHTSIZER_PROMETHEUS_PORT="${RIGHTSIZER_PROMETHEUS_PORT:-29090}"
  export RIGHTSIZER_DCGM_PORT="${RIGHTSIZER_DCGM_PORT:-29400}"
  export RIGHTSIZER_OPERATOR_METRICS_PORT="${RIGHTSIZER_OPERATOR_METRICS_PORT:-28080}"
  if ! hack/cluster.sh status >/dev/null 2>&1; then
    hack/cluster.sh up
    started=1
  fi
  # Every e2e fixture reads these.
  eval "$(hack/cluster.sh env)"
else
  hack/cluster.sh up
  started=1
  eval "$(hack/cluster.sh env)"
fi

stop() { if [ "$started" = 1 ] && [ -z "${RIGHTSIZER_KEEP_CLUSTER:-}" ]; then hack/cluster.sh down || true; fi; }
trap stop EXIT

"$ROOT/.venv/bin/pytest" "$@"
