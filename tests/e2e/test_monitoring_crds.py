"""The chart's ServiceMonitor and PrometheusRule are accepted by the real prometheus-operator CRDs
(from its Go module, at the version in hack/versions.env), served by the real API server, which
refuses what they refuse."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.chart import CHART, ROOT, run_helm
from tests.support.cluster import Cluster, wait_for

pytestmark = pytest.mark.e2e

KINDS = {"ServiceMonitor": "servicemonitors", "PrometheusRule": "prometheusrules"}


def _versions() -> dict[str, str]:
    lines = (ROOT / "hack" / "versions.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


def _crd_dir() -> Path:
    cache = Path(os.environ.get("RIGHTSIZER_CACHE_DIR", Path.home() / ".cache" / "gpu-rightsizer"))
    return cache / "crds" / f"prometheus-operator-{_versions()['PROMETHEUS_OPERATOR_VERSION']}"


@pytest.fixture(scope="module")
def monitoring_crds(cluster: Cluster) -> Iterator[None]:
    files = [_crd_dir() / f"monitoring.coreos.com_{plural}.yaml" for plural in KINDS.values()]
    missing = [str(f) for f in files if not f.is_file()]
    assert not missing, f"run hack/tools.sh: missing {missing}"
    # Server-side: these CRDs are larger than the last-applied annotation allows.
    args = [a for f in files for a in ("-f", str(f))]
    cluster.kubectl("apply", "--server-side", *args)
    for plural in KINDS.values():
        wait_for(
            lambda plural=plural: "Established=True"
            in cluster.kubectl(
                "get", "crd", f"{plural}.monitoring.coreos.com", "-o",
                "jsonpath={range .status.conditions[*]}{.type}={.status} {end}",
            ).stdout,
            timeout=30,
        )  # fmt: skip
    yield
    cluster.kubectl("delete", *args, "--wait=false", check=False)


def _rendered(namespace: str) -> list[dict[str, Any]]:
    text = run_helm(
        "template", "gpu-rightsizer", str(CHART), "--namespace", namespace,
        "--kube-version", _versions()["KUBE_VERSION"],
        "--set", "serviceMonitor.enabled=true", "--set", "prometheusRule.enabled=true",
    )  # fmt: skip
    return [doc for doc in yaml.safe_load_all(text) if doc and doc.get("kind") in KINDS]


def _create(cluster: Cluster, namespace: str, obj: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return cluster.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(obj), check=False)


def test_the_charts_servicemonitor_and_prometheusrule_are_accepted(
    cluster: Cluster, namespace: str, monitoring_crds: None
) -> None:
    objects = _rendered(namespace)
    assert sorted(o["kind"] for o in objects) == sorted(KINDS)
    for obj in objects:
        created = _create(cluster, namespace, obj)
        assert created.returncode == 0, f"{obj['kind']} refused: {created.stderr}"
        stored = json.loads(
            cluster.kubectl(
                "get", KINDS[obj["kind"]], obj["metadata"]["name"], "-n", namespace, "-o", "json"
            ).stdout
        )
        # Stored as rendered: the CRD's schema pruned none of the chart's fields.
        assert stored["spec"] == obj["spec"]


def test_the_crds_refuse_what_prometheus_operator_would_not_read(
    cluster: Cluster, namespace: str, monitoring_crds: None
) -> None:
    monitor = next(o for o in _rendered(namespace) if o["kind"] == "ServiceMonitor")
    monitor["metadata"]["name"] = "broken"
    monitor["spec"]["endpoints"][0]["interval"] = "every minute"
    refused = _create(cluster, namespace, monitor)
    assert refused.returncode != 0 and "spec.endpoints[0].interval" in refused.stderr
