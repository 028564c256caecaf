#!/usr/bin/env bash
# The demo: bring up the local GPU cluster, create a mixed GPU fleet, drive its utilisation through the
# fake DCGM exporter and show what the GPUs really do, live, from Prometheus. Leaves the cluster up.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
cd "$ROOT"

hack/cluster.sh up
eval "$(hack/cluster.sh env)"

exec "$ROOT/.venv/bin/python" -m rightsizer.devcluster.demo "$@"
