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
  if ! hack/cluster.sh status >/dev/null 2>&1; then
    hack/cluster.sh up
    started=1
  fi
  # Every e2e fixture reads these.
  set -a; eval "$(hack/cluster.sh env)"; set +a
else
  hack/cluster.sh up
  started=1
  set -a; eval "$(hack/cluster.sh env)"; set +a
fi

stop() { if [ "$started" = 1 ] && [ -z "${RIGHTSIZER_KEEP_CLUSTER:-}" ]; then hack/cluster.sh down || true; fi; }
trap stop EXIT

export PATH="$RIGHTSIZER_BIN:$PATH"
"$ROOT/.venv/bin/pytest" "$@"
