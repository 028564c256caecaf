"""The Helm chart: lint, render with several value sets, refuse bad values with a clear message, and
grant exactly the permissions the operator's code calls — no more, no less, never `*`.

The RBAC check works in both directions. The calls are read from the code itself (Kubernetes client
calls in the modules `rightsizer run` executes, kopf handler registrations, the CRDs' status
subresources) and translated by the tables below into (apiGroup, resource, verb); a call missing from
the tables fails the test, so a new call cannot ship without its permission. Each translated need must
be granted by the rendered chart, and every rendered rule must be such a need.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from rightsizer.adapters.cluster_cache import WATCHED
from rightsizer.adapters.metrics.base import PodLabels
from rightsizer.adapters.workload_kinds import KINDS, ReplicasVia
from rightsizer.runtime.settings import Settings
from rightsizer.runtime.telemetry import Telemetry
from tests.support.chart import CHART, helm_bin

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "operator" / "rightsizer"
KUBE_VERSION = "1.36.3"  # the local cluster's: renders do not depend on the helm build
RELEASE, RELEASE_NS = "rs", "gpu-rightsizer"
FULLNAME = "rs-gpu-rightsizer"


# -- rendering --------------------------------------------------------------------------------------


@cache
def _render(values_json: str) -> tuple[dict[str, Any], ...]:
    proc = _helm_template(json.loads(values_json))
    if proc.returncode != 0:
        raise AssertionError(f"helm template failed:\n{proc.stderr}")
    return tuple(d for d in yaml.safe_load_all(proc.stdout) if d)


def _helm_template(values: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [helm_bin(), "template", RELEASE, str(CHART), "--namespace", RELEASE_NS,
         "--kube-version", KUBE_VERSION, "--values", "-"],
        input=json.dumps(values), capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def render(values: dict[str, Any] | None = None) -> tuple[dict[str, Any], ...]:
    return _render(json.dumps(values or {}, sort_keys=True))


def find(docs: Iterable[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def deployment(values: dict[str, Any] | None = None) -> dict[str, Any]:
    [dep] = find(render(values), "Deployment")
    return dep


def container(values: dict[str, Any] | None = None) -> dict[str, Any]:
    [c] = deployment(values)["spec"]["template"]["spec"]["containers"]
    return dict(c)


def env(values: dict[str, Any] | None = None) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container(values).get("env", []) if "value" in e}


ALL_ON: dict[str, Any] = {
    "namespaces": ["team-a", "team-b"],
    "providers": {"kwok": True, "clusterapi": True, "karpenter": True},
    "dcgm": {"service": "gpu-operator/nvidia-dcgm-exporter"},
    "rbac": {
        "scaleTargets": [
            {"apiGroup": "apps", "resources": ["deployments", "statefulsets"]},
            {"apiGroup": "kubeflow.org", "resources": ["pytorchjobs"]},
        ],
        "workloadKinds": [*(k.kind for k in KINDS.values() if k.group != "apps"), "Kueue"],
    },
    "serviceMonitor": {"enabled": True},
    "prometheusRule": {"enabled": True},
}

VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "single_replica_without_peering": {"replicas": 1, "peering": {"enabled": False}},
    "restricted_namespaces": {"namespaces": ["team-a", "team-b"]},
    "consolidation_off": {"consolidation": {"enabled": False}},
    "every_provider_and_monitoring": ALL_ON,
    "cluster_wide_everything": {**ALL_ON, "namespaces": []},
    "restricted_without_consolidation": {"namespaces": [RELEASE_NS], "consolidation": {"enabled": False}},
    "prometheus_auth_and_tls": {
        "prometheus": {
            "url": "https://prometheus.monitoring:9091",
            "bearerToken": {"secretName": "prometheus-token"},
            "ca": {"secretName": "prometheus-ca"},
        }
    },
    "dcgm_direct": {"metricsSource": "DCGM", "dcgm": {"endpoints": ["http://10.0.0.1:9400/metrics"]}},
    "dcgm_discovered": {"metricsSource": "DCGM", "dcgm": {"service": "gpu-operator/nvidia-dcgm-exporter"}},
    "dry_run_recommend_only": {"dryRun": True, "dashboard": {"enabled": False}},
}


# -- lint and template ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_helm_lint_passes_strictly(name: str, tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(VALUE_SETS[name]))
    proc = subprocess.run(
        [helm_bin(), "lint", "--strict", str(CHART), "--kube-version", KUBE_VERSION, "--values", str(values)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_tooling_helm_renders_and_lints_the_chart_without_being_told_a_kube_version() -> None:
    # A released helm assumes the Kubernetes its client-go speaks; the chart needs >= 1.25.
    for command in (["template", RELEASE, str(CHART)], ["lint", "--strict", str(CHART)]):
        proc = subprocess.run([helm_bin(), *command], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_helm_template_renders_named_labelled_objects(name: str) -> None:
    docs = render(VALUE_SETS[name])
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Service"} <= kinds
    for doc in docs:
        meta = doc["metadata"]
        assert meta["name"] and len(meta["name"]) <= 63, meta
        assert meta["labels"]["app.kubernetes.io/instance"] == RELEASE, meta


def test_the_chart_renders_the_documented_defaults() -> None:
    docs = render()
    assert {d["kind"] for d in docs} == {
        "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Service", "Deployment",
        "PodDisruptionBudget", "ConfigMap",
    }  # fmt: skip
    assert not find(docs, "Role"), "cluster-wide by default: no per-namespace Roles"


# -- values.schema.json and template checks refuse bad values clearly -----------------------------------

BAD_VALUES: list[tuple[str, dict[str, Any], str]] = [
    ("interval_as_string", {"interval": "30s"}, "at '/interval': got string, want number"),
    ("negative_replicas", {"replicas": -1}, "at '/replicas': minimum: got -1, want 1"),
    ("zero_replicas", {"replicas": 0}, "at '/replicas': minimum: got 0, want 1"),
    ("unknown_top_level_key", {"intervall": 30}, "additional properties 'intervall' not allowed"),
    ("unknown_nested_key", {"prometheus": {"adress": "x"}}, "additional properties 'adress' not allowed"),
    ("unknown_metrics_source", {"metricsSource": "NVML"}, "at '/metricsSource'"),
    ("negative_price", {"pricing": {"gpuHour": "-2"}}, "at '/pricing/gpuHour'"),
    ("price_not_a_number", {"pricing": {"energyKwh": "cheap"}}, "at '/pricing/energyKwh'"),
    ("prometheus_url_without_scheme", {"prometheus": {"url": "prometheus:9090"}}, "at '/prometheus/url'"),
    ("namespace_not_a_dns_label", {"namespaces": ["Team_A"]}, "at '/namespaces/0'"),
    ("dcgm_service_without_namespace", {"dcgm": {"service": "exporter"}}, "at '/dcgm/service'"),
    ("pod_labels", {"dcgm": {"podLabels": "newest"}}, "at '/dcgm/podLabels'"),
    ("port_out_of_range", {"metrics": {"port": 70000}}, "at '/metrics/port'"),
    ("bad_alert_duration", {"prometheusRule": {"drainStuckFor": "half an hour"}}, "drainStuckFor"),
    ("scale_target_without_resources", {"rbac": {"scaleTargets": [{"apiGroup": "apps"}]}}, "resources"),
    (
        "replicas_without_peering",
        {"replicas": 2, "peering": {"enabled": False}},
        "replicas > 1 needs peering.enabled=true",
    ),
    (
        "two_ca_sources",
        {"prometheus": {"ca": {"configMapName": "a", "secretName": "b"}}},
        "set configMapName or secretName, not both",
    ),
    ("dcgm_source_without_exporters", {"metricsSource": "DCGM"}, "metricsSource DCGM needs dcgm.service"),
]


@pytest.mark.parametrize(("case", "values", "message"), BAD_VALUES, ids=[c[0] for c in BAD_VALUES])
def test_bad_values_fail_with_a_message_naming_the_field(
    case: str, values: dict[str, Any], message: str
) -> None:
    proc = _helm_template(values)
    assert proc.returncode != 0, f"{case}: accepted"
    assert message in proc.stderr, proc.stderr


# -- the Deployment -----------------------------------------------------------------------------------


def test_two_replicas_with_peering_and_never_standalone() -> None:
    dep = deployment()
    assert dep["spec"]["replicas"] == 2
    assert dep["spec"]["strategy"]["type"] == "RollingUpdate"
    assert "--standalone" not in container().get("args", [])
    assert env()["RIGHTSIZER_STANDALONE"] == "false"
    assert env()["RIGHTSIZER_PEERING_NAME"] == FULLNAME
    pod_id = next(e for e in container()["env"] if e["name"] == "POD_ID")
    assert pod_id["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


def test_a_single_replica_without_peering_is_standalone_and_never_overlaps_in_a_rollout() -> None:
    values = VALUE_SETS["single_replica_without_peering"]
    assert env(values)["RIGHTSIZER_STANDALONE"] == "true"
    assert "RIGHTSIZER_PEERING_NAME" not in env(values)
    assert deployment(values)["spec"]["strategy"]["type"] == "Recreate"
    assert not find(render(values), "PodDisruptionBudget")


def test_probes_hit_healthz_on_the_health_port() -> None:
    c = container({"health": {"port": 9191}})
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"metrics": 8080, "health": 9191}
    for probe in ("livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert env({"health": {"port": 9191}})["RIGHTSIZER_HEALTH_PORT"] == "9191"


def test_the_container_is_locked_down() -> None:
    pod = deployment()["spec"]["template"]["spec"]
    c = container()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
    # The only writable path: the client's discovery cache.
    assert [m["mountPath"] for m in c["volumeMounts"]] == ["/tmp"]
    assert c["image"] == "gpu-rightsizer:0.1.0"


def test_the_prometheus_token_and_ca_are_mounted_files_never_read_through_the_api() -> None:
    values = VALUE_SETS["prometheus_auth_and_tls"]
    e = env(values)
    mounts = {m["name"]: m["mountPath"] for m in container(values)["volumeMounts"]}
    assert e["RIGHTSIZER_PROMETHEUS__BEARER_TOKEN_FILE"].startswith(mounts["prometheus-token"] + "/")
    assert e["RIGHTSIZER_PROMETHEUS__CA_FILE"].startswith(mounts["prometheus-ca"] + "/")
    volumes = {v["name"]: v for v in deployment(values)["spec"]["template"]["spec"]["volumes"]}
    assert volumes["prometheus-token"]["secret"]["secretName"] == "prometheus-token"
    assert volumes["prometheus-ca"]["secret"]["secretName"] == "prometheus-ca"
    for doc in render(values):
        for rule in doc.get("rules", []):
            assert "secrets" not in rule["resources"], rule


# -- every value reaches the operator's Settings -------------------------------------------------------

CUSTOM: dict[str, Any] = {
    "interval": 12,
    "namespaces": ["ml", "web"],
    "dryRun": True,
    "metricsSource": "DCGM",
    "maxMetricAgeSeconds": 40,
    "apiConnections": 9,
    "peering": {"name": "shared"},
    "prometheus": {
        "url": "https://prom.example:9091",
        "timeoutSeconds": 7,
        "seriesSelector": 'job="dcgm-exporter"',
        "insecureSkipVerify": True,
        "bearerToken": {"secretName": "tok"},
        "ca": {"configMapName": "ca"},
    },
    "dcgm": {
        "endpoints": ["http://a:9400/metrics", "http://b:9400/metrics"],
        "service": "gpu-operator/dcgm",
        "port": 9500,
        "podLabels": "namespace=k8s_ns,pod=k8s_pod,container=k8s_container",
        "timeoutSeconds": 3,
    },
    "pricing": {
        "currency": "EUR",
        "gpuHour": "3.10",
        "cpuCoreHour": 0.05,
        "energyKwh": "0.25",
        "pue": "1.2",
        "gpuWatts": "400",
    },
    "consolidation": {
        "enabled": False,
        "intervalSeconds": 90,
        "drainTimeoutSeconds": 600,
        "pollSeconds": 5,
        "maxNodesPerPass": 2,
        "scaleUpCooldownSeconds": 120,
        "removalTimeoutSeconds": 1800,
        "poolSelector": {"team": "ml"},
    },
    "metrics": {"port": 9090},
    "health": {"port": 9091},
}


def load_settings(monkeypatch: pytest.MonkeyPatch, variables: dict[str, str]) -> Settings:
    """Settings as the operator reads them in its pod: from exactly these environment variables."""
    for name in [n for n in os.environ if n.startswith("RIGHTSIZER_")]:
        monkeypatch.delenv(name)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    return Settings.load()


def test_every_value_reaches_the_operator_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(monkeypatch, env(CUSTOM))
    assert settings.interval_seconds == 12
    assert settings.namespaces == ["ml", "web"]
    assert settings.dry_run is True
    assert settings.metrics_source == "DCGM"
    assert settings.max_metric_age_seconds == 40
    assert settings.api_connections == 9
    assert settings.peering_name == "shared"
    assert settings.standalone is False
    assert (settings.metrics_port, settings.health_port) == (9090, 9091)
    p = settings.prometheus
    assert (p.url, p.timeout_seconds, p.insecure_skip_verify) == ("https://prom.example:9091", 7, True)
    assert p.bearer_token_file and p.ca_file
    d = settings.dcgm
    assert d.endpoints == ["http://a:9400/metrics", "http://b:9400/metrics"]
    assert (d.service, d.port, d.timeout_seconds) == ("gpu-operator/dcgm", 9500, 3)
    assert d.label_shape.fixed == PodLabels("k8s_ns", "k8s_pod", "k8s_container")
    assert p.series_selector == 'job="dcgm-exporter"'
    pr = settings.pricing
    assert (pr.currency, pr.gpu_hour, pr.cpu_core_hour) == ("EUR", Decimal("3.10"), Decimal("0.05"))
    assert (pr.energy_kwh, pr.pue, pr.gpu_watts) == (Decimal("0.25"), Decimal("1.2"), Decimal("400"))
    c = settings.consolidation
    assert (c.enabled, c.interval_seconds, c.drain_timeout_seconds, c.poll_seconds) == (False, 90, 600, 5)
    assert (c.max_nodes_per_pass, c.scale_up_cooldown_seconds, c.removal_timeout_seconds) == (2, 120, 1800)
    # A map does not fit an environment variable: the pool selector is a flag.
    assert container(CUSTOM)["args"] == ["--pool-selector", "team=ml"]


def test_the_default_values_load_into_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(monkeypatch, env())
    assert settings.interval_seconds == 30
    assert settings.namespaces == []
    assert settings.consolidation.enabled is True
    assert settings.pricing.gpu_hour == Decimal("2.00")


# Settings the chart deliberately leaves at the operator's default, with why.
NOT_A_VALUE = {
    "metrics_address": "a pod's /metrics listens on every interface",
    "peering_priority": "random per replica, so exactly one replica leads",
    "consolidation.pool_selector": "passed as --pool-selector flags",
    "record_decisions": "a local file for backtests: the chart's pods have a read-only root filesystem",
}


def _setting_paths(model: type[Any], prefix: str = "") -> Iterator[str]:
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
            yield from _setting_paths(annotation, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}"


def test_every_operator_setting_is_a_chart_value() -> None:
    rendered = set(env(CUSTOM)) | set(env())
    missing = [
        path
        for path in _setting_paths(Settings)
        if path not in NOT_A_VALUE and "RIGHTSIZER_" + path.replace(".", "__").upper() not in rendered
    ]
    assert not missing, f"settings the chart cannot set: {missing}"


# -- metrics Service, ServiceMonitor, PrometheusRule, dashboard -------------------------------------------


def test_the_metrics_service_selects_the_operator_pods() -> None:
    docs = render()
    [svc] = find(docs, "Service")
    assert svc["spec"]["ports"] == [
        {"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}
    ]
    pod_labels = deployment()["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()


def test_service_monitor_and_prometheus_rule_only_when_asked() -> None:
    assert not find(render(), "ServiceMonitor") and not find(render(), "PrometheusRule")
    docs = render(ALL_ON)
    [sm] = find(docs, "ServiceMonitor")
    assert sm["spec"]["endpoints"][0]["port"] == "metrics"
    assert sm["spec"]["endpoints"][0]["honorLabels"] is True
    assert find(docs, "PrometheusRule")


def _alerts() -> dict[str, dict[str, Any]]:
    [rule] = find(render(ALL_ON), "PrometheusRule")
    return {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}


def test_alerts_for_operator_down_metrics_unavailable_and_stuck_drains() -> None:
    alerts = _alerts()
    assert set(alerts) == {"GPURightsizerDown", "GPURightsizerMetricsUnavailable", "GPURightsizerDrainStuck"}
    assert f'job="{FULLNAME}"' in alerts["GPURightsizerDown"]["expr"]
    unavailable = alerts["GPURightsizerMetricsUnavailable"]
    assert "rightsizer_metrics_unavailable" in unavailable["expr"] and unavailable["expr"].endswith("== 1")
    assert unavailable["for"] == "10m"
    assert 'key="rightsizer.io/disrupted"' in alerts["GPURightsizerDrainStuck"]["expr"]
    # Prometheus' own template syntax survives Helm's.
    assert "{{ $labels.workload }}" in unavailable["annotations"]["summary"]


def test_prometheus_accepts_the_alert_rules(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool (Debian package prometheus) is not installed")
    [rule] = find(render(ALL_ON), "PrometheusRule")
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rule["spec"]))
    proc = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


DASHBOARD_METRICS = (
    "rightsizer_workload_gpu_utilization",
    "rightsizer_workload_replicas",
    "rightsizer_workload_cost_per_hour",
    "rightsizer_pool_idle_cost_per_hour",
    "rightsizer_savings_per_hour",
    "rightsizer_decisions_total",
)


def test_the_dashboard_charts_utilisation_replicas_cost_idle_cost_savings_and_decisions() -> None:
    [cm] = find(render(), "ConfigMap", f"{FULLNAME}-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(cm["data"]["gpu-rightsizer.json"])
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    for metric in DASHBOARD_METRICS:
        assert any(metric in e for e in exprs), f"no panel shows {metric}"
    assert not find(render({"dashboard": {"enabled": False}}), "ConfigMap")


def test_dashboard_and_alerts_name_only_metrics_the_operator_exports() -> None:
    exported: set[str] = set()
    for family in Telemetry().registry.collect():
        suffixes = {"counter": ("_total",), "histogram": ("", "_bucket", "_sum", "_count")}
        exported |= {family.name + suffix for suffix in suffixes.get(family.type, ("",))}
    [cm] = find(render(), "ConfigMap")
    text = cm["data"]["gpu-rightsizer.json"] + json.dumps(_alerts())
    used = set(re.findall(r"\brightsizer_[a-z_]+", text))
    assert used and used <= exported, f"unknown metrics: {used - exported}"


# -- CRDs --------------------------------------------------------------------------------------------


def test_the_chart_crds_are_the_same_bytes_as_crds_dir() -> None:
    repo = {p.name: p.read_bytes() for p in (ROOT / "crds").glob("*.yaml")}
    chart = {p.name: p.read_bytes() for p in (CHART / "crds").glob("*.yaml")}
    assert sorted(chart) == sorted(repo), "run `make crds`"
    for name, content in repo.items():
        assert chart[name] == content, f"{name} differs: run `make crds`"


# -- RBAC: the rendered rules -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Grant:
    group: str
    resource: str
    verb: str
    name: str | None = None  # resourceNames


def grants(docs: Iterable[dict[str, Any]]) -> dict[str, set[Grant]]:
    """What the chart's ServiceAccount may do, by scope: "*" cluster-wide, else the namespace."""
    docs = list(docs)
    roles = {(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]): d for d in docs}
    out: dict[str, set[Grant]] = {}
    for binding in docs:
        if binding["kind"] not in ("ClusterRoleBinding", "RoleBinding"):
            continue
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": FULLNAME, "namespace": RELEASE_NS}
        ], binding
        ref = binding["roleRef"]
        scope = "*" if binding["kind"] == "ClusterRoleBinding" else binding["metadata"]["namespace"]
        role_ns = None if ref["kind"] == "ClusterRole" else binding["metadata"]["namespace"]
        role = roles[(ref["kind"], role_ns, ref["name"])]
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        for name in rule.get("resourceNames") or [None]:
                            out.setdefault(scope, set()).add(Grant(group, resource, verb, name))
    return out


def rbac_rules(docs: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for d in docs if d["kind"] in ("ClusterRole", "Role") for r in d["rules"]]


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_rendered_rbac_has_no_wildcard(name: str) -> None:
    for rule in rbac_rules(render(VALUE_SETS[name])):
        for key in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
            assert "*" not in rule.get(key, []), rule
        assert "nonResourceURLs" not in rule, rule
        assert not any("*" in r for r in rule["resources"]), rule


def test_restricted_namespaces_get_roles_instead_of_cluster_wide_workload_permissions() -> None:
    docs = render(VALUE_SETS["restricted_namespaces"])
    g = grants(docs)
    assert Grant("rightsizer.io", "gpuworkloads", "watch") not in g["*"]
    for ns in ("team-a", "team-b"):
        assert Grant("rightsizer.io", "gpuworkloads", "watch") in g[ns]
        assert Grant("apps", "deployments/scale", "patch") in g[ns]
    # Events about pools go to the operator's namespace, about nodes to "default".
    assert Grant("", "events", "create") in g[RELEASE_NS]
    assert Grant("", "events", "create") in g["default"]
    assert Grant("", "namespaces", "watch") in g["*"]
    assert Grant("", "namespaces", "watch") not in grants(render())["*"]


def test_the_peering_object_is_the_only_one_the_operator_may_patch() -> None:
    g = grants(render())["*"]
    assert Grant("kopf.dev", "clusterkopfpeerings", "patch", FULLNAME) in g
    assert Grant("kopf.dev", "clusterkopfpeerings", "patch") not in g
    assert not [
        x for x in grants(render(VALUE_SETS["single_replica_without_peering"]))["*"] if x.group == "kopf.dev"
    ]


# -- RBAC: what the code calls ----------------------------------------------------------------------------

# Typed client calls: (API class, method) -> (apiGroup, resource, verb).
CLIENT_CALLS: dict[tuple[str, str], tuple[str, str, str]] = {
    ("CoreV1Api", "list_node"): ("", "nodes", "list"),
    ("CoreV1Api", "read_node"): ("", "nodes", "get"),
    ("CoreV1Api", "patch_node"): ("", "nodes", "patch"),
    ("CoreV1Api", "create_node"): ("", "nodes", "create"),
    ("CoreV1Api", "delete_node"): ("", "nodes", "delete"),
    ("CoreV1Api", "list_pod_for_all_namespaces"): ("", "pods", "list"),
    ("CoreV1Api", "list_namespaced_pod"): ("", "pods", "list"),
    ("CoreV1Api", "patch_namespaced_pod"): ("", "pods", "patch"),
    ("CoreV1Api", "create_namespaced_pod_eviction"): ("", "pods/eviction", "create"),
    ("CoreV1Api", "read_namespaced_replication_controller"): ("", "replicationcontrollers", "get"),
    ("CoreV1Api", "create_namespaced_event"): ("", "events", "create"),
    ("PolicyV1Api", "list_pod_disruption_budget_for_all_namespaces"): (
        "policy",
        "poddisruptionbudgets",
        "list",
    ),
    ("PolicyV1Api", "list_namespaced_pod_disruption_budget"): ("policy", "poddisruptionbudgets", "list"),
    ("AppsV1Api", "read_namespaced_replica_set"): ("apps", "replicasets", "get"),
    ("AppsV1Api", "list_replica_set_for_all_namespaces"): ("apps", "replicasets", "list"),
    ("AppsV1Api", "read_namespaced_stateful_set"): ("apps", "statefulsets", "get"),
    ("AppsV1Api", "read_namespaced_deployment"): ("apps", "deployments", "get"),
    ("AppsV1Api", "patch_namespaced_deployment"): ("apps", "deployments", "patch"),
    ("AppsV1Api", "patch_namespaced_stateful_set"): ("apps", "statefulsets", "patch"),
    ("AppsV1Api", "list_deployment_for_all_namespaces"): ("apps", "deployments", "list"),
    ("AppsV1Api", "list_stateful_set_for_all_namespaces"): ("apps", "statefulsets", "list"),
    ("AutoscalingV2Api", "list_namespaced_horizontal_pod_autoscaler"): (
        "autoscaling",
        "horizontalpodautoscalers",
        "list",
    ),
    ("DiscoveryV1Api", "list_namespaced_endpoint_slice"): ("discovery.k8s.io", "endpointslices", "list"),
}

# CustomObjectsApi methods: verb, index of the plural argument, subresource.
CUSTOM_CALLS: dict[str, tuple[str, int, str]] = {
    "get_cluster_custom_object": ("get", 2, ""),
    "create_cluster_custom_object": ("create", 2, ""),
    "list_cluster_custom_object": ("list", 2, ""),
    "patch_cluster_custom_object": ("patch", 2, ""),
    "delete_cluster_custom_object": ("delete", 2, ""),
    "list_namespaced_custom_object": ("list", 3, ""),
    "get_namespaced_custom_object": ("get", 3, ""),
    "patch_namespaced_custom_object": ("patch", 3, ""),
    "get_namespaced_custom_object_scale": ("get", 3, "/scale"),
    "patch_namespaced_custom_object_scale": ("patch", 3, "/scale"),
}

# Which value turns a module's calls on (a module not listed here fails the test: classify it).
FEATURE_OF_MODULE = {
    "adapters/kube.py": "core",
    "adapters/cluster_view.py": "core",
    "adapters/cluster_snapshot.py": "consolidation",
    "adapters/node_drain.py": "consolidation",
    "adapters/replica_surge.py": "consolidation",
    "adapters/nodepools/none.py": "consolidation",
    "adapters/nodepools/kwok.py": "kwok",
    "adapters/nodepools/clusterapi.py": "clusterapi",
    "adapters/nodepools/karpenter.py": "karpenter",
    "adapters/metrics/dcgm.py": "dcgm-discovery",
    "handlers/workloads.py": "core",
    "handlers/consolidation.py": "consolidation",
}
FEATURE_OF_FUNCTION = {("adapters/kube.py", "ensure_cluster_peering"): "peering"}
# Events the API server keeps elsewhere than the object's namespace.
EVENT_NAMESPACE_OF_MODULE = {"adapters/node_drain.py": "default"}

# What kopf itself does, whatever the handlers (framework), with the code that turns it on.
KOPF_FRAMEWORK: list[tuple[str, str, tuple[str, ...], str, str, str]] = [
    # (group, resource, verbs, feature, evidence file, evidence)
    ("apiextensions.k8s.io", "customresourcedefinitions", ("list", "watch"), "core", "cli/run.py",
     "kopf.run("),
    ("", "namespaces", ("list", "watch"), "restricted", "cli/run.py", "namespaces=settings.namespaces"),
    ("kopf.dev", "clusterkopfpeerings", ("list", "watch"), "peering", "handlers/operator.py",
     "settings.peering.clusterwide = True"),
]  # fmt: skip

NAMESPACED = {
    "pods", "pods/eviction", "events", "replicationcontrollers", "deployments", "statefulsets",
    "replicasets", "poddisruptionbudgets", "horizontalpodautoscalers", "scaledobjects", "podautoscalers",
    "gpuworkloads", "gpuworkloads/status", "endpointslices", "machines", "machinedeployments/scale",
}  # fmt: skip


@dataclass(frozen=True)
class Need:
    group: str
    resource: str
    verb: str
    feature: str
    scope: str  # cluster | watched | default | release | dcgm
    name: str | None = None  # a single object (resourceNames)
    where: str = ""

    def grant(self) -> Grant:
        return Grant(self.group, self.resource, self.verb, self.name)


def _module_constants(tree: ast.Module) -> dict[str, str]:
    out: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                names = target.elts if isinstance(target, ast.Tuple) else [target]
                values = node.value.elts if isinstance(node.value, ast.Tuple) else [node.value]
                for n, v in zip(names, values, strict=False):
                    if isinstance(n, ast.Name) and isinstance(v, ast.Constant) and isinstance(v.value, str):
                        out[n.id] = v.value
    return out


def _string(node: ast.expr, constants: dict[str, str]) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name):
        return constants.get(node.id)
    return None


def _functions(tree: ast.Module) -> Iterator[tuple[ast.FunctionDef | None, ast.AST]]:
    """Every node with the innermost function it is in (None at module level)."""

    def visit(
        node: ast.AST, function: ast.FunctionDef | None
    ) -> Iterator[tuple[ast.FunctionDef | None, ast.AST]]:
        yield function, node
        inner = node if isinstance(node, ast.FunctionDef) else function
        for child in ast.iter_child_nodes(node):
            yield from visit(child, inner)

    yield from visit(tree, None)


def _parameter_values(
    tree: ast.Module, function: ast.FunctionDef, arg: ast.expr, constants: dict[str, str]
) -> list[str] | None:
    """When `arg` is a parameter of `function`, the constants every caller in the module passes."""
    if not isinstance(arg, ast.Name):
        return None
    params = [a.arg for a in function.args.args]
    if arg.id not in params:
        return None
    index, values = params.index(arg.id), []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == function.name:
            value = _string(node.args[index], constants) if index < len(node.args) else None
            if value is None:
                return None
            values.append(value)
    return values or None


def _api_receivers(tree: ast.Module) -> dict[str, str]:
    """Expressions bound to a typed API object, e.g. {"self._core": "CoreV1Api", "custom": ...}."""
    out: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                names = target.elts if isinstance(target, ast.Tuple) else [target]
                values = node.value.elts if isinstance(node.value, ast.Tuple) else [node.value]
                for n, v in zip(names, values, strict=False):
                    api = _api_class(v)
                    if api:
                        out[ast.unparse(n)] = api
    return out


def _api_class(node: ast.expr) -> str | None:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        name = node.func.attr
        if name.endswith("Api") and name != "ApiClient" and ast.unparse(node.func.value) == "client":
            return name
    return None


def _scope(feature: str, resource: str, module: str) -> str:
    if resource == "events":
        return EVENT_NAMESPACE_OF_MODULE.get(module, "watched" if feature == "core" else "release")
    if feature == "dcgm-discovery":
        return "dcgm"
    return "watched" if feature == "core" and resource in NAMESPACED else "cluster"


def client_needs() -> list[Need]:
    needs: list[Need] = []
    unknown: list[str] = []
    for path in sorted(SOURCE.rglob("*.py")):
        module = path.relative_to(SOURCE).as_posix()
        # Dev tooling, pure code, models, and commands that run as the user are not the operator.
        if module.startswith(("devcluster/", "core/", "api/")) or (
            module.startswith("cli/") and module != "cli/run.py"
        ):
            continue
        tree = ast.parse(path.read_text())
        constants, receivers = _module_constants(tree), _api_receivers(tree)
        for function, node in _functions(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            api = receivers.get(ast.unparse(node.func.value)) or _api_class(node.func.value)
            if api is None:
                continue
            method = node.func.attr
            where = f"{module}:{node.lineno} {api}.{method}"
            enclosing = function.name if function else ""
            if module not in FEATURE_OF_MODULE:
                unknown.append(f"{where}: module not in FEATURE_OF_MODULE")
                continue
            feature = FEATURE_OF_FUNCTION.get((module, enclosing), FEATURE_OF_MODULE[module])
            targets: list[tuple[str, str, str]] = []
            if api == "CustomObjectsApi" and method in CUSTOM_CALLS:
                verb, plural_at, sub = CUSTOM_CALLS[method]
                groups, plurals = (
                    [v] if (v := _string(a, constants)) is not None
                    else (_parameter_values(tree, function, a, constants) if function else None)
                    for a in (node.args[0], node.args[plural_at])
                )  # fmt: skip
                if groups is None or plurals is None:
                    unknown.append(f"{where}: group and plural are neither constants nor passed as constants")
                    continue
                targets = [(g, p + sub, verb) for g, p in zip(groups, plurals, strict=True)]
            elif (api, method) in CLIENT_CALLS:
                targets = [CLIENT_CALLS[(api, method)]]
            else:
                unknown.append(f"{where}: add it to CLIENT_CALLS and grant it in templates/_rbac.tpl")
                continue
            for group, resource, verb in targets:
                name = None
                if group == "kopf.dev" and verb == "get":
                    name = "<peering>"  # only the operator's own peering object is read
                needs.append(
                    Need(group, resource, verb, feature, _scope(feature, resource, module), name, where)
                )
    assert not unknown, "Kubernetes calls the RBAC tables do not know:\n" + "\n".join(unknown)
    return needs


def _has_status_subresource(group: str, plural: str) -> bool:
    path = ROOT / "crds" / f"{group}_{plural}.yaml"
    if not path.exists():
        return False
    crd = yaml.safe_load(path.read_text())
    return any("status" in (v.get("subresources") or {}) for v in crd["spec"]["versions"])


def kopf_needs() -> list[Need]:
    """From the handler registrations: indexes list and watch; timers and change handlers also patch
    (finalizers, annotations, and the status subresource where the CRD has one); kopf.event creates."""
    needs: list[Need] = []
    for module in ("handlers/workloads.py", "handlers/consolidation.py"):
        tree = ast.parse((SOURCE / module).read_text())
        constants = _module_constants(tree)
        feature = FEATURE_OF_MODULE[module]
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = ast.unparse(node.func)
            if func == "kopf.event":
                scope = "watched" if feature == "core" else "release"
                needs.append(
                    Need("", "events", "create", feature, scope, where=f"{module}:{node.lineno} kopf.event")
                )
                if scope == "release":  # out of a cluster kopf's own namespace is "default"
                    needs.append(
                        Need("", "events", "create", feature, "default", where=f"{module}:{node.lineno}")
                    )
                continue
            if not (func in {"kopf.index", "kopf.timer"} or func.startswith(("kopf.on.", "kopf.daemon"))):
                continue
            if func in ("kopf.on.startup", "kopf.on.login", "kopf.on.cleanup", "kopf.on.probe"):
                continue
            args = [_string(a, constants) for a in node.args]
            assert all(a is not None for a in args), f"{module}:{node.lineno}: resource is not a constant"
            if len(args) == 1:
                group, plural = "", str(args[0])
            else:
                group, plural = str(args[0]), str(args[-1])
                group = "" if group == "v1" else group
            kinds = ("list", "watch") if func == "kopf.index" else ("list", "watch", "patch")
            scope = _scope(feature, plural, module)
            where = f"{module}:{node.lineno} {func}"
            needs.extend(Need(group, plural, v, feature, scope, where=where) for v in kinds)
            if func != "kopf.index" and _has_status_subresource(group, plural):
                needs.append(Need(group, f"{plural}/status", "patch", feature, scope, where=where))
    for group, resource, verbs, feature, evidence_file, evidence in KOPF_FRAMEWORK:
        assert evidence in (SOURCE / evidence_file).read_text(), f"{evidence_file} no longer has {evidence!r}"
        needs.extend(
            Need(group, resource, v, feature, "cluster", where=f"kopf ({evidence_file})") for v in verbs
        )
    # kopf keeps each peer's heartbeat in the peering object's status (no status subresource).
    needs.append(
        Need("kopf.dev", "clusterkopfpeerings", "patch", "peering", "cluster", "<peering>", "kopf peering")
    )
    return needs


def scale_target_needs(values: dict[str, Any]) -> list[Need]:
    """kube.py reaches targets through the dynamic client: GET/PATCH of {target}/scale and GET/PATCH of
    the object itself (annotations, spec.suspend), for each configured scale target."""
    kube = (SOURCE / "adapters/kube.py").read_text()
    for call in ('_call("GET", f"{path}/scale")', '_call("PATCH", f"{path}/scale"', '_call("GET", path)',
                 '_call("PATCH", path'):  # fmt: skip
        assert call in kube, f"kube.py no longer makes {call}: update scale_target_needs"
    targets = (values.get("rbac") or {}).get("scaleTargets") or [
        {"apiGroup": "apps", "resources": ["deployments", "statefulsets"]}
    ]
    return [
        Need(t["apiGroup"], r + sub, verb, "core", "watched", where="adapters/kube.py dynamic client")
        for t in targets
        for r in t["resources"]
        for sub in ("", "/scale")
        for verb in ("get", "patch")
    ]


def workload_kind_needs(values: dict[str, Any]) -> list[Need]:
    """kube.py reaches a registered kind's object (GET/PATCH) and, where the kind scales through it,
    its /scale (GET/PATCH), as for scale targets; the kinds enabled in rbac.workloadKinds."""
    by_name = {k.kind: k for k in KINDS.values()}
    enabled = (values.get("rbac") or {}).get("workloadKinds") or []
    # Kueue is no kind of target: jobs it queues are suspended through its Workload (list, patch).
    kueue = [
        Need("kueue.x-k8s.io", "workloads", verb, "core", "watched", where="adapters/kueue.py")
        for verb in ("list", "patch")
        if "Kueue" in enabled
    ]
    return kueue + [
        Need(kind.group, kind.plural + sub, verb, "core", "watched", where="adapters/workload_kinds.py KINDS")
        for kind in (by_name[name] for name in enabled if name != "Kueue")
        for sub in ("", "/scale") if sub == "" or kind.replicas_via is ReplicasVia.SCALE
        for verb in ("get", "patch")
    ]  # fmt: skip


def cache_needs() -> list[Need]:
    """adapters/cluster_cache.py lists and watches the kinds it declares in WATCHED (raw paths built
    from that table, so the table is what it calls)."""
    where = "adapters/cluster_cache.py WATCHED"
    return [
        Need(kind.group, kind.plural, verb, "core", _scope("core", kind.plural, "adapters/cluster_cache.py"),
             where=where)
        for kind in WATCHED
        for verb in ("list", "watch")
    ]  # fmt: skip


def enabled_features(values: dict[str, Any]) -> set[str]:
    providers = values.get("providers") or {}
    consolidation = (values.get("consolidation") or {}).get("enabled", True)
    features = {"core"}
    if (values.get("peering") or {}).get("enabled", True):
        features.add("peering")
    if values.get("namespaces"):
        features.add("restricted")
    if consolidation:
        features.add("consolidation")
        features.update(p for p in ("kwok", "clusterapi", "karpenter") if providers.get(p))
    if (values.get("dcgm") or {}).get("service"):
        features.add("dcgm-discovery")
    return features


def needs_for(values: dict[str, Any]) -> list[Need]:
    features = enabled_features(values)
    peering = (values.get("peering") or {}).get("name") or FULLNAME
    everything = [
        *client_needs(),
        *kopf_needs(),
        *cache_needs(),
        *scale_target_needs(values),
        *workload_kind_needs(values),
    ]
    return [
        Need(n.group, n.resource, n.verb, n.feature, n.scope, peering if n.name else None, n.where)
        for n in everything
        if n.feature in features
    ]


def _scopes(need: Need, values: dict[str, Any]) -> list[str]:
    watched = values.get("namespaces") or []
    if need.scope == "watched":
        return list(watched) or ["*"]
    if need.scope == "default":
        return ["default"]
    if need.scope == "release":
        return [RELEASE_NS]
    if need.scope == "dcgm":
        return [values["dcgm"]["service"].split("/")[0]]
    return ["*"]


RBAC_VALUE_SETS = [
    "defaults",
    "restricted_namespaces",
    "consolidation_off",
    "every_provider_and_monitoring",
    "cluster_wide_everything",
    "restricted_without_consolidation",
    "single_replica_without_peering",
]


@pytest.mark.parametrize("name", RBAC_VALUE_SETS)
def test_the_chart_grants_every_call_the_code_makes(name: str) -> None:
    values = VALUE_SETS[name]
    g = grants(render(values))
    missing = []
    for need in needs_for(values):
        for scope in _scopes(need, values):
            if need.grant() not in g.get("*", set()) | g.get(scope, set()):
                missing.append(
                    f"{need.verb} {need.group or 'core'}/{need.resource} in {scope}  ({need.where})"
                )
    assert not missing, "the chart does not grant:\n" + "\n".join(sorted(set(missing)))


@pytest.mark.parametrize("name", RBAC_VALUE_SETS)
def test_the_chart_grants_nothing_the_code_does_not_call(name: str) -> None:
    values = VALUE_SETS[name]
    allowed = {n.grant() for n in needs_for(values)}
    extra = sorted(
        f"{x.verb} {x.group or 'core'}/{x.resource}{f' ({x.name})' if x.name else ''} in {scope}"
        for scope, granted in grants(render(values)).items()
        for x in granted
        if x not in allowed
    )
    assert not extra, "granted but never called:\n" + "\n".join(extra)


def test_the_code_scan_finds_the_calls_the_features_are_built_on() -> None:
    """Guards the scanner itself: if it stopped seeing calls, both RBAC tests would pass vacuously."""
    found = {(n.group, n.resource, n.verb, n.feature) for n in client_needs() + kopf_needs() + cache_needs()}
    for expected in [
        ("", "pods/eviction", "create", "consolidation"),
        ("", "nodes", "patch", "consolidation"),
        ("policy", "poddisruptionbudgets", "list", "consolidation"),
        ("", "nodes", "delete", "kwok"),
        ("cluster.x-k8s.io", "machinedeployments/scale", "patch", "clusterapi"),
        ("karpenter.sh", "nodeclaims", "delete", "karpenter"),
        ("kopf.dev", "clusterkopfpeerings", "create", "peering"),
        ("rightsizer.io", "gpuworkloads", "watch", "core"),
        ("rightsizer.io", "gpuworkloads/status", "patch", "core"),
        ("rightsizer.io", "gpunodepools/status", "patch", "consolidation"),
        ("", "pods", "patch", "core"),
        ("keda.sh", "scaledobjects", "watch", "core"),
        ("autoscaling.internal.knative.dev", "podautoscalers", "watch", "core"),
        ("", "events", "create", "core"),
    ]:
        assert expected in found, expected


def test_the_operator_prefers_nodes_without_gpus_unless_the_user_sets_an_affinity() -> None:
    # On a GPU node its pod (local scratch volume) would keep that node from ever being consolidated.
    affinity = deployment()["spec"]["template"]["spec"]["affinity"]
    [preferred] = affinity["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert preferred["preference"]["matchExpressions"] == [
        {"key": "nvidia.com/gpu.product", "operator": "DoesNotExist"}
    ]
    assert affinity["podAntiAffinity"], "replicas still spread over nodes"
    own = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}}
    assert deployment({"affinity": own})["spec"]["template"]["spec"]["affinity"] == own
