#!/usr/bin/env bash
# The local GPU cluster: a real kube-apiserver, etcd, kube-scheduler and kube-controller-manager run
# by kwokctl's binary runtime, fake GPU nodes managed by kwok, a real Prometheus and the fake DCGM
# exporter. Every listener binds 127.0.0.1.
#
#   hack/cluster.sh up       build/install tools if needed, start everything, wait until ready
#   hack/cluster.sh up --karpenter   also run the real Karpenter (its kwok cloud provider): a NodePool
#                            per GPU shape launches priced fake nodes for Pending pods (or RIGHTSIZER_KARPENTER=1)
#   hack/cluster.sh down     stop everything, leave no process or port behind
#   hack/cluster.sh status   say what runs (exit 0 when up, 3 when down)
#   hack/cluster.sh env      print `export` lines: KUBECONFIG, RIGHTSIZER_PROMETHEUS_URL, RIGHTSIZER_DCGM_URL,
#                            and PATH with the cluster's kubectl and helm first
#
# Optional knobs for large clusters (the live benchmark sets them; unset, nothing changes):
#   RIGHTSIZER_AUDIT_POLICY=FILE       kube-apiserver audit policy; the log is $HOME/.kwok/clusters/NAME/logs/audit.log
#   RIGHTSIZER_CONTROL_PLANE_QPS=N     client QPS of kube-controller-manager and kube-scheduler (burst 2N)
#   RIGHTSIZER_SCRAPE_INTERVAL=15s     Prometheus scrape interval (default 2s)
#   RIGHTSIZER_DCGM_ARGS="--interval 10"  extra arguments of the fake DCGM exporter
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
# shellcheck source=versions.env
source "$HERE/versions.env"

CACHE="${RIGHTSIZER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/gpu-rightsizer}"
NAME="${RIGHTSIZER_CLUSTER_NAME:-rightsizer}"
STATE="${RIGHTSIZER_CLUSTER_DIR:-$CACHE/clusters/$NAME}"
# local: our own kwok control plane. kind/existing: the cluster in $KUBECONFIG (we add the exporter + Prometheus).
MODE="${RIGHTSIZER_TEST_CLUSTER:-local}"
case "$MODE" in
  local) KUBECONFIG_PATH="$STATE/kubeconfig" ;;
  kind|existing) KUBECONFIG_PATH="${KUBECONFIG:-$HOME/.kube/config}"; KUBECONFIG_PATH="${KUBECONFIG_PATH%%:*}" ;;
  *) echo "RIGHTSIZER_TEST_CLUSTER must be local, kind or existing (got '$MODE')" >&2; exit 2 ;;
esac
APISERVER_PORT="${RIGHTSIZER_APISERVER_PORT:-16443}"
PROM_PORT="${RIGHTSIZER_PROMETHEUS_PORT:-19090}"
DCGM_PORT="${RIGHTSIZER_DCGM_PORT:-19400}"
OPERATOR_METRICS_PORT="${RIGHTSIZER_OPERATOR_METRICS_PORT:-18080}"
# Karpenter's health probe; its metrics listen on the next port.
KARPENTER_PORT="${RIGHTSIZER_KARPENTER_PORT:-18081}"
KARPENTER="${RIGHTSIZER_KARPENTER:-0}"
READY_TIMEOUT="${RIGHTSIZER_READY_TIMEOUT:-180}"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
BIN="$CACHE/bin"
# Pods annotated so are never completed by kwok (see write_kwok_stages).
KEEP_RUNNING_ANNOTATION="kwok.rightsizer.io/keep-running"

log() { printf '[cluster] %s\n' "$*" >&2; }
fail() { printf '[cluster] ERROR: %s\n' "$*" >&2; exit 1; }

port_busy() { # true when something listens on 127.0.0.1:$1
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

kctl() { "$BIN/kubectl" --kubeconfig "$KUBECONFIG_PATH" "$@"; }

apiserver_up() { [ -f "$KUBECONFIG_PATH" ] && kctl get --raw /readyz >/dev/null 2>&1; }

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

stop_pid() { # stop_pid FILE — TERM, then KILL after 10 s
  local f="$1" pid
  [ -f "$f" ] || return 0
  pid="$(cat "$f")"
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

wait_until() { # wait_until SECONDS DESCRIPTION CMD... (the description is for the reader of the call)
  local limit="$1"; shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 1
  done
}

write_kwok_config() {
  cat >"$STATE/kwok.yaml" <<YAML
apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokctlConfiguration
options:
  runtime: binary
  bindAddress: 127.0.0.1
  kubeApiserverPort: $APISERVER_PORT
  kubeVersion: $KUBE_VERSION
  etcdVersion: ${ETCD_VERSION#v}
  kubeApiserverBinary: $BIN/kube-apiserver
  kubeControllerManagerBinary: $BIN/kube-controller-manager
  kubeSchedulerBinary: $BIN/kube-scheduler
  kubectlBinary: $BIN/kubectl
  etcdBinary: $BIN/etcd
  kwokControllerBinary: $BIN/kwok
  cacheDir: $CACHE/kwok-cache
  heartbeatFactor: 5
YAML
  if [ -n "${RIGHTSIZER_AUDIT_POLICY:-}" ]; then
    [ -f "$RIGHTSIZER_AUDIT_POLICY" ] || fail "RIGHTSIZER_AUDIT_POLICY: no such file $RIGHTSIZER_AUDIT_POLICY"
    echo "  kubeAuditPolicy: $RIGHTSIZER_AUDIT_POLICY" >>"$STATE/kwok.yaml"
  fi
  write_kwok_stages
  # kwok keeps the stages kwokctl gives it (its defaults) and adds ours from a second config file.
  # With no kube-proxy a Service's ClusterIP leads nowhere: the API server calls webhooks (admission
  # and CRD conversion) and aggregated APIs at their Service's endpoints instead (the real Kueue's
  # webhooks, tests/support/kueue.py).
  cat >>"$STATE/kwok.yaml" <<YAML
componentsPatches:
  - name: kwok-controller
    extraArgs:
      - {key: config, value: "$STATE/kwok-stages.yaml"}
  - name: kube-apiserver
    extraArgs:
      - {key: enable-aggregator-routing, value: "true"}
YAML
  if [ -n "${RIGHTSIZER_CONTROL_PLANE_QPS:-}" ]; then
    local qps="$RIGHTSIZER_CONTROL_PLANE_QPS" burst=$((RIGHTSIZER_CONTROL_PLANE_QPS * 2))
    cat >>"$STATE/kwok.yaml" <<YAML
  - name: kube-controller-manager
    extraArgs:
      - {key: kube-api-qps, value: "$qps"}
      - {key: kube-api-burst, value: "$burst"}
  - name: kube-scheduler
    extraArgs:
      - {key: kube-api-qps, value: "$qps"}
      - {key: kube-api-burst, value: "$burst"}
YAML
  fi
}

write_kwok_stages() {
  # kwok completes a Job's pod as soon as it runs. A pod annotated $KEEP_RUNNING_ANNOTATION=true
  # keeps running until it is deleted, as a long training job's would: this stage matches it where
  # kwok's pod-complete does, and its weight makes kwok always choose it (kwok picks among the
  # matching stages by weight; its own have none). Its next status is the one the pod has.
  cat >"$STATE/kwok-stages.yaml" <<YAML
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: rightsizer-pod-keep-running
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
      - key: .metadata.deletionTimestamp
        operator: DoesNotExist
      - key: .status.phase
        operator: In
        values: [Running]
      - key: '.metadata.annotations["$KEEP_RUNNING_ANNOTATION"]'
        operator: In
        values: ["true"]
  weight: 1
  next:
    statusTemplate: |
      phase: Running
YAML
}

write_prometheus_config() {
  cat >"$STATE/prometheus.yml" <<YAML
global:
  scrape_interval: ${RIGHTSIZER_SCRAPE_INTERVAL:-2s}
  evaluation_interval: 5s
scrape_configs:
  - job_name: dcgm-exporter
    static_configs:
      - targets: ["127.0.0.1:$DCGM_PORT"]
  - job_name: gpu-rightsizer
    static_configs:
      - targets: ["127.0.0.1:$OPERATOR_METRICS_PORT"]
YAML
}

cmd_env() { # shell lines: `eval "$(hack/cluster.sh env)"` exports them and puts kubectl and helm on PATH
  printf 'export %s=%q\n' \
    KUBECONFIG "$KUBECONFIG_PATH" \
    RIGHTSIZER_PROMETHEUS_URL "http://127.0.0.1:$PROM_PORT" \
    RIGHTSIZER_DCGM_URL "http://127.0.0.1:$DCGM_PORT/metrics" \
    RIGHTSIZER_OPERATOR_METRICS_PORT "$OPERATOR_METRICS_PORT" \
    RIGHTSIZER_BIN "$BIN"
  # shellcheck disable=SC2016 # $PATH is for the shell that evaluates the line
  printf 'export PATH=%q:"$PATH"\n' "$BIN"
}

cmd_status() {
  local up=0
  if apiserver_up; then log "kube-apiserver: up at https://127.0.0.1:$APISERVER_PORT (kubeconfig $KUBECONFIG_PATH)"; else log "kube-apiserver: down"; up=3; fi
  if pid_alive "$STATE/prometheus.pid"; then log "prometheus: up at http://127.0.0.1:$PROM_PORT"; else log "prometheus: down"; up=3; fi
  if pid_alive "$STATE/fake-dcgm.pid"; then log "fake DCGM exporter: up at http://127.0.0.1:$DCGM_PORT/metrics"; else log "fake DCGM exporter: down"; up=3; fi
  if karpenter_wanted; then
    if pid_alive "$STATE/karpenter.pid"; then log "Karpenter: up (log $STATE/logs/karpenter.log)"; else log "Karpenter: down"; up=3; fi
  fi
  return "$up"
}

cleanup_failed_up() {
  trap - EXIT
  log "start-up failed; cleaning up (logs kept in $STATE/logs)"
  mkdir -p "$STATE/logs"
  cp -f "$HOME/.kwok/clusters/$NAME/logs/"*.log "$STATE/logs/" 2>/dev/null || true
  cmd_down_quiet
  exit 1
}

serving() { # serving PIDFILE URL — the process is alive and answers
  pid_alive "$1" || return 2
  curl -sf "$2" >/dev/null
}

wait_serving() { # wait_serving PIDFILE URL LOG WHAT
  local deadline=$((SECONDS + 60)) rc
  while :; do
    serving "$1" "$2" && return 0
    rc=$?
    if [ "$rc" = 2 ]; then tail -20 "$3" >&2; fail "$4 exited during start-up (log: $3)"; fi
    [ "$SECONDS" -lt "$deadline" ] || { tail -20 "$3" >&2; fail "$4 did not answer at $2 within 60s (log: $3)"; }
    sleep 0.5
  done
}

karpenter_wanted() { [ "$KARPENTER" = 1 ] || [ -f "$STATE/karpenter.pid" ]; }

start_karpenter() {
  pid_alive "$STATE/karpenter.pid" && return 0
  log "starting Karpenter $KARPENTER_VERSION (kwok cloud provider; health on 127.0.0.1:$KARPENTER_PORT)"
  local crds=("$CACHE/crds/karpenter-$KARPENTER_VERSION" "$CACHE/crds/karpenter-kwok-$KARPENTER_VERSION") d
  for d in "${crds[@]}"; do kctl apply --server-side -f "$d" >/dev/null; done
  kctl wait --for=condition=Established crd/nodepools.karpenter.sh crd/nodeclaims.karpenter.sh \
    crd/kwoknodeclasses.karpenter.kwok.sh --timeout=60s >/dev/null
  "$PYTHON" -m rightsizer.devcluster.karpenter_fleet instance-types >"$STATE/karpenter-instance-types.json"
  KUBECONFIG="$KUBECONFIG_PATH" DISABLE_LEADER_ELECTION=true \
    INSTANCE_TYPES_FILE_PATH="$STATE/karpenter-instance-types.json" \
    HEALTH_PROBE_PORT="$KARPENTER_PORT" METRICS_PORT="$((KARPENTER_PORT + 1))" \
    nohup "$BIN/karpenter-kwok" >"$STATE/logs/karpenter.log" 2>&1 &
  echo $! >"$STATE/karpenter.pid"
  wait_serving "$STATE/karpenter.pid" "http://127.0.0.1:$KARPENTER_PORT/readyz" "$STATE/logs/karpenter.log" "Karpenter"
  "$PYTHON" -m rightsizer.devcluster.karpenter_fleet nodepools | kctl apply -f - >/dev/null
}

cmd_up() {
  if [ "${1:-}" = --karpenter ]; then KARPENTER=1; fi
  [ "$KARPENTER" = 1 ] && [ "$MODE" != local ] && fail "--karpenter runs only on the local cluster (RIGHTSIZER_TEST_CLUSTER=local)"
  if apiserver_up && pid_alive "$STATE/prometheus.pid" && pid_alive "$STATE/fake-dcgm.pid" \
    && { [ "$KARPENTER" != 1 ] || pid_alive "$STATE/karpenter.pid"; }; then
    log "already running (KUBECONFIG=$KUBECONFIG_PATH); 'hack/cluster.sh down' stops it"
    return 0
  fi
  local resume=0
  if [ "$MODE" = local ] && apiserver_up; then
    # The control plane survived (e.g. the exporter crashed): start only what is missing.
    log "control plane already up; starting the missing pieces"
    resume=1
  elif pid_alive "$STATE/prometheus.pid" || pid_alive "$STATE/fake-dcgm.pid"; then
    log "a previous cluster is partly running; stopping it first"
    cmd_down_quiet
  fi
  "$HERE/tools.sh" >/dev/null
  [ -x "$PYTHON" ] || fail "python environment missing at $PYTHON: run 'make venv' first"
  command -v prometheus >/dev/null || fail "prometheus not found on PATH: run hack/tools.sh (installs Debian's prometheus)"
  local p
  local ports=()
  pid_alive "$STATE/prometheus.pid" || ports+=("$PROM_PORT")
  pid_alive "$STATE/fake-dcgm.pid" || ports+=("$DCGM_PORT")
  [ "$KARPENTER" = 1 ] && ! pid_alive "$STATE/karpenter.pid" && ports+=("$KARPENTER_PORT" "$((KARPENTER_PORT + 1))")
  [ "$MODE" = local ] && [ "$resume" = 0 ] && ports+=("$APISERVER_PORT")
  for p in "${ports[@]}"; do
    port_busy "$p" && fail "port 127.0.0.1:$p is in use by another process; stop it or set RIGHTSIZER_*_PORT (see hack/cluster.sh)"
  done
  mkdir -p "$STATE/logs"
  # Any failure from here on (a failed command or an explicit fail) tears down what was started.
  trap cleanup_failed_up EXIT
  write_kwok_config
  write_prometheus_config

  if [ "$MODE" = local ] && [ "$resume" = 0 ]; then
    start_control_plane
  elif [ "$MODE" = local ]; then
    :
  else
    apiserver_up || fail "no API server answers for $KUBECONFIG_PATH (RIGHTSIZER_TEST_CLUSTER=$MODE)"
    [ "$MODE" = kind ] && "$HERE/kind-gpu.sh"
  fi
  start_observability
  [ "$KARPENTER" = 1 ] && start_karpenter
  trap - EXIT
  log "ready: KUBECONFIG=$KUBECONFIG_PATH  Prometheus http://127.0.0.1:$PROM_PORT  DCGM http://127.0.0.1:$DCGM_PORT/metrics"
}

start_control_plane() {
  log "starting control plane (Kubernetes $KUBE_VERSION, etcd $ETCD_VERSION, kwok $KWOK_VERSION)"
  # A cluster whose processes died with their session (reboot, killed CI job) leaves its state behind;
  # kwokctl would refuse to create it again.
  if [ -d "$HOME/.kwok/clusters/$NAME" ]; then
    PATH="$BIN:$PATH" "$BIN/kwokctl" delete cluster --name "$NAME" >/dev/null 2>&1 || rm -rf "$HOME/.kwok/clusters/$NAME"
  fi
  # kwokctl picks the components' ports when it creates a cluster and they bind them a moment later:
  # two clusters created at once (the demo beside a test run) can pick the same port. One at a time,
  # until the components are up; the components themselves must not inherit the lock (8>&-), or it
  # would be held for as long as the cluster runs.
  if ! (
    flock 8
    PATH="$BIN:$PATH" "$BIN/kwokctl" create cluster --name "$NAME" --config "$STATE/kwok.yaml" \
      --kubeconfig "$KUBECONFIG_PATH" --wait "${READY_TIMEOUT}s" >"$STATE/logs/kwokctl.log" 2>&1 8>&-
  ) 8>"$CACHE/.cluster-create.lock"; then
    tail -20 "$STATE/logs/kwokctl.log" >&2
    fail "kwokctl could not start the control plane (log: $STATE/logs/kwokctl.log)"
  fi
  wait_until "$READY_TIMEOUT" "apiserver" apiserver_up || fail "kube-apiserver not ready within ${READY_TIMEOUT}s"

  log "creating fake GPU nodes"
  "$PYTHON" -m rightsizer.devcluster.fleet | kctl apply -f - >/dev/null
  wait_until "$READY_TIMEOUT" "nodes" kctl wait node --all --for=condition=Ready --timeout=5s \
    || fail "fake nodes not Ready within ${READY_TIMEOUT}s (is kwok-controller running? see $HOME/.kwok/clusters/$NAME/logs)"
  # Pods need their namespace's default ServiceAccount, which kube-controller-manager creates.
  wait_until "$READY_TIMEOUT" "default serviceaccount" kctl -n default get serviceaccount default \
    || fail "kube-controller-manager did not create the default ServiceAccount within ${READY_TIMEOUT}s"
}

start_observability() {
  if ! pid_alive "$STATE/fake-dcgm.pid"; then
    log "starting fake DCGM exporter on 127.0.0.1:$DCGM_PORT"
    local extra=()
    read -ra extra <<<"${RIGHTSIZER_DCGM_ARGS:-}"  # words, as a shell would split them
    nohup "$PYTHON" -m rightsizer.devcluster.fake_dcgm --kubeconfig "$KUBECONFIG_PATH" \
      --listen "127.0.0.1:$DCGM_PORT" "${extra[@]}" >"$STATE/logs/fake-dcgm.log" 2>&1 &
    echo $! >"$STATE/fake-dcgm.pid"
    wait_serving "$STATE/fake-dcgm.pid" "http://127.0.0.1:$DCGM_PORT/metrics" "$STATE/logs/fake-dcgm.log" "fake DCGM exporter"
  fi
  if ! pid_alive "$STATE/prometheus.pid"; then
    log "starting Prometheus on 127.0.0.1:$PROM_PORT"
    nohup prometheus --config.file="$STATE/prometheus.yml" --storage.tsdb.path="$STATE/prometheus-data" \
      --web.listen-address="127.0.0.1:$PROM_PORT" --web.enable-lifecycle --storage.tsdb.retention.time=1d \
      >"$STATE/logs/prometheus.log" 2>&1 &
    echo $! >"$STATE/prometheus.pid"
    wait_serving "$STATE/prometheus.pid" "http://127.0.0.1:$PROM_PORT/-/ready" "$STATE/logs/prometheus.log" "Prometheus"
  fi
}

cmd_down_quiet() {
  # Karpenter first: with the API server gone it would only log errors.
  stop_pid "$STATE/karpenter.pid"
  stop_pid "$STATE/fake-dcgm.pid"
  stop_pid "$STATE/prometheus.pid"
  stop_pid "$STATE/operator.pid"
  if [ "$MODE" = local ] && [ -x "$BIN/kwokctl" ]; then
    PATH="$BIN:$PATH" "$BIN/kwokctl" delete cluster --name "$NAME" >/dev/null 2>&1 || true
  fi
  rm -rf "$STATE/prometheus-data"
  [ "$MODE" = local ] && rm -f "$KUBECONFIG_PATH"
  return 0
}

cmd_down() {
  cmd_down_quiet
  local p busy=0
  local ports=("$PROM_PORT" "$DCGM_PORT")
  [ "$MODE" = local ] && ports+=("$APISERVER_PORT")
  # Processes may take a few seconds to release their sockets after kwokctl returns.
  for p in "${ports[@]}"; do
    wait_until 20 "port $p free" bash -c "! (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null" \
      || { log "port $p is still in use"; busy=1; }
  done
  [ "$busy" = 0 ] || fail "something still listens after stopping; see 'ss -ltnp'"
  log "stopped"
}

case "${1:-}" in
  up) shift; cmd_up "$@" ;;
  down) cmd_down ;;
  status) cmd_status ;;
  env) cmd_env ;;
  *) echo "usage: $0 up [--karpenter]|down|status|env" >&2; exit 2 ;;
esac
