"""The Helm chart against the real API server, and the operator running as the chart's identity.

kwok does not run containers, so the chart's pods never start the operator. Instead the operator runs
here as a process that logs in with a token of the chart's ServiceAccount: every request it makes is
authorised by the chart's RBAC only, exactly as in a pod. The API server is asked what that identity
may do (SelfSubjectAccessReview, the same authoriser real requests meet) and real requests are made
with it, both allowed and refused.
"""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from tests.support.chart import HelmRelease, service_account_kubeconfig
from tests.support.cluster import Cluster, GpuUtilization, new_namespace_name, wait_for
from tests.support.operator import running_operator
from tests.support.world import World, gpu_deployment, gpu_workload

pytestmark = pytest.mark.e2e

INTERVAL = 3
OWNER_LABEL = "rightsizer.io/test-owner"
CRDS = ("gpuworkloads.rightsizer.io", "gpunodepools.rightsizer.io", "clusterkopfpeerings.kopf.dev")


@pytest.fixture(scope="module")
def namespaces(cluster: Cluster) -> Iterator[Callable[[str], str]]:
    """Creates namespaces that live as long as the module (the chart's Roles need them to exist)."""
    core = client.CoreV1Api(cluster.api)
    made: list[str] = []

    def make(prefix: str) -> str:
        name = new_namespace_name(prefix)
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        wait_for(lambda: core.read_namespaced_service_account("default", name), timeout=60)
        made.append(name)
        return name

    yield make
    for name in made:
        core.delete_namespace(name, propagation_policy="Background")


def chart_values(cluster: Cluster, watched: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "namespaces": watched,
        "prometheus": {"url": cluster.prometheus_url},
        "providers": {"kwok": True},
        # kwok pretends the operator pods run; keep them off the GPU nodes other tests count.
        "nodeSelector": {"rightsizer.io/pool": "cpu"},
        **extra,
    }


@pytest.fixture(scope="module")
def installed(cluster: Cluster, namespaces: Callable[[str], str]) -> Iterator[tuple[HelmRelease, str, str]]:
    """The chart installed for one watched namespace: (release, watched namespace, install output)."""
    release_ns, watched = namespaces("chart"), namespaces("watched")
    release = HelmRelease(f"rs{secrets.token_hex(3)}", release_ns, cluster.kubeconfig)
    output = release.install(chart_values(cluster, [watched]))
    # Helm creates the CRDs only when absent; keep the cluster's copies current with crds/.
    cluster.kubectl("apply", "-f", "crds/")
    try:
        yield release, watched, output
    finally:
        if release.installed():
            release.uninstall()
        cluster.kubectl("delete", "clusterkopfpeering", release.fullname, "--ignore-not-found")


@pytest.fixture(scope="module")
def operator_kubeconfig(
    cluster: Cluster, installed: tuple[HelmRelease, str, str], tmp_path_factory: pytest.TempPathFactory
) -> str:
    release = installed[0]
    path = tmp_path_factory.mktemp("identity") / "kubeconfig"
    return service_account_kubeconfig(cluster.kubeconfig, release.namespace, release.service_account, path)


@dataclass(frozen=True)
class Access:
    """One request, as the API server's authoriser sees it."""

    verb: str
    resource: str
    group: str = ""
    namespace: str | None = None
    subresource: str = ""
    name: str = ""

    def __str__(self) -> str:
        target = f"{self.resource}.{self.group}" if self.group else self.resource
        sub = f"/{self.subresource}" if self.subresource else ""
        name = f" {self.name}" if self.name else ""
        return f"{self.verb} {target}{sub}{name} in {self.namespace or 'the cluster'}"


def can_i(kubeconfig: str, access: Access) -> bool:
    """The API server's answer for the identity of `kubeconfig` (SelfSubjectAccessReview)."""
    api = config.new_client_from_config(config_file=kubeconfig)
    review = client.V1SelfSubjectAccessReview(
        spec=client.V1SelfSubjectAccessReviewSpec(
            resource_attributes=client.V1ResourceAttributes(
                verb=access.verb,
                group=access.group,
                resource=access.resource,
                subresource=access.subresource or None,
                namespace=access.namespace,
                name=access.name or None,
            )
        )
    )
    answer = client.AuthorizationV1Api(api).create_self_subject_access_review(review)
    return bool(answer.status.allowed)


def test_helm_install_creates_the_chart_against_the_real_api_server(
    cluster: Cluster, installed: tuple[HelmRelease, str, str]
) -> None:
    release, watched, output = installed
    assert release.status()["info"]["status"] == "deployed"
    assert "GPU Rightsizer" in output and f"namespaces {watched}" in output, "NOTES.txt is shown"
    ns = release.namespace
    dep = client.AppsV1Api(cluster.api).read_namespaced_deployment(release.fullname, ns)
    assert dep.spec.replicas == 2
    assert dep.spec.template.spec.service_account_name == release.service_account
    client.CoreV1Api(cluster.api).read_namespaced_service(release.fullname, ns)
    rbac = client.RbacAuthorizationV1Api(cluster.api)
    rbac.read_cluster_role(release.fullname)
    rbac.read_cluster_role_binding(release.fullname)
    rbac.read_namespaced_role(release.fullname, watched)
    rbac.read_namespaced_role_binding(release.fullname, watched)
    for crd in CRDS:
        cluster.kubectl("get", "crd", crd)


# What the operator's code calls (see tests/unit/test_helm_chart.py for where), with the chart's values
# of this module: one watched namespace, consolidation on, the kwok provider.
def allowed_calls(watched: str, release: HelmRelease) -> list[Access]:
    rs, apps = "rightsizer.io", "apps"
    return [
        Access("list", "gpuworkloads", rs, watched),
        Access("watch", "gpuworkloads", rs, watched),
        Access("patch", "gpuworkloads", rs, watched),
        Access("patch", "gpuworkloads", rs, watched, "status"),
        Access("get", "deployments", apps, watched, "scale"),
        Access("patch", "deployments", apps, watched, "scale"),
        Access("patch", "statefulsets", apps, watched, "scale"),
        Access("get", "deployments", apps, watched),
        Access("list", "pods", "", watched),
        Access("watch", "pods", "", watched),
        Access("patch", "pods", "", watched),
        Access("create", "events", "", watched),
        Access("watch", "horizontalpodautoscalers", "autoscaling", watched),
        Access("watch", "scaledobjects", "keda.sh", watched),
        Access("watch", "podautoscalers", "autoscaling.internal.knative.dev", watched),
        Access("watch", "nodes"),
        Access("get", "nodes"),
        Access("patch", "nodes"),
        Access("create", "nodes"),  # providers.kwok
        Access("delete", "nodes"),  # providers.kwok
        Access("list", "pods"),  # every namespace: the packing simulation
        Access("patch", "pods", "", "default"),  # every namespace: the checkpoint handshake
        Access("create", "pods", "", "kube-system", "eviction"),
        Access("list", "poddisruptionbudgets", "policy"),
        Access("get", "replicasets", apps, "default"),
        Access("get", "statefulsets", apps, "default"),
        Access("get", "replicationcontrollers", "", "default"),
        Access("watch", "gpunodepools", rs),
        Access("patch", "gpunodepools", rs, None, "status"),
        Access("watch", "customresourcedefinitions", "apiextensions.k8s.io"),
        Access("watch", "namespaces"),
        Access("create", "clusterkopfpeerings", "kopf.dev"),
        Access("watch", "clusterkopfpeerings", "kopf.dev"),
        Access("get", "clusterkopfpeerings", "kopf.dev", name=release.fullname),
        Access("patch", "clusterkopfpeerings", "kopf.dev", name=release.fullname),
        Access("create", "events", "", "default"),
        Access("create", "events", "", release.namespace),
    ]


def refused_calls(watched: str, release: HelmRelease) -> list[Access]:
    rs, apps = "rightsizer.io", "apps"
    return [
        Access("get", "secrets", "", watched),
        Access("list", "secrets"),
        Access("get", "configmaps", "", watched),
        Access("delete", "deployments", apps, watched),
        Access("create", "deployments", apps, watched),
        Access("update", "deployments", apps, watched),
        Access("delete", "pods", "", watched),
        Access("create", "pods", "", watched),
        Access("delete", "gpuworkloads", rs, watched),
        Access("create", "gpuworkloads", rs, watched),
        Access("patch", "deployments", apps, "default", "scale"),  # not a watched namespace
        Access("watch", "gpuworkloads", rs, "default"),  # consolidation may list them everywhere, no more
        Access("create", "events", "", "kube-system"),
        Access("patch", "clusterkopfpeerings", "kopf.dev", name="someone-else"),
        Access("delete", "clusterkopfpeerings", "kopf.dev", name=release.fullname),
        Access("update", "nodes"),
        Access("patch", "machines", "cluster.x-k8s.io", watched),  # providers.clusterapi is off
        Access("delete", "nodeclaims", "karpenter.sh"),  # providers.karpenter is off
        Access("create", "clusterroles", "rbac.authorization.k8s.io"),
        Access("bind", "clusterroles", "rbac.authorization.k8s.io"),
        Access("impersonate", "serviceaccounts", "", watched),
        Access("create", "serviceaccounts", "", release.namespace, "token"),
        Access("create", "pods", "", watched, "exec"),
    ]


def test_the_api_server_allows_the_chart_identity_what_the_operator_calls(
    cluster: Cluster, installed: tuple[HelmRelease, str, str], operator_kubeconfig: str
) -> None:
    release, watched, _ = installed
    denied = [str(a) for a in allowed_calls(watched, release) if not can_i(operator_kubeconfig, a)]
    assert not denied, "the chart's identity may not:\n" + "\n".join(denied)
    # Real requests with the token, not just the authoriser's answer.
    api = config.new_client_from_config(config_file=operator_kubeconfig)
    custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
    custom.list_namespaced_custom_object("rightsizer.io", "v1alpha1", watched, "gpuworkloads")
    custom.list_cluster_custom_object("rightsizer.io", "v1alpha1", "gpunodepools")
    nodes = core.list_node().items
    core.read_node(nodes[0].metadata.name)
    core.list_pod_for_all_namespaces(limit=1)
    client.PolicyV1Api(api).list_pod_disruption_budget_for_all_namespaces(limit=1)
    event = client.CoreV1Event(
        metadata=client.V1ObjectMeta(generate_name="rbac-check.", namespace=watched),
        involved_object=client.V1ObjectReference(
            kind="GPUWorkload", name="rbac-check", namespace=watched, api_version="rightsizer.io/v1alpha1"
        ),
        reason="RbacCheck",
        message="the chart's identity may post events",
        type="Normal",
    )
    core.create_namespaced_event(watched, event)


def test_the_api_server_refuses_the_chart_identity_everything_else(
    cluster: Cluster, installed: tuple[HelmRelease, str, str], operator_kubeconfig: str
) -> None:
    release, watched, _ = installed
    granted = [str(a) for a in refused_calls(watched, release) if can_i(operator_kubeconfig, a)]
    assert not granted, "the chart's identity may also:\n" + "\n".join(granted)
    cluster.apply(gpu_deployment("victim", 0), watched)
    api = config.new_client_from_config(config_file=operator_kubeconfig)
    attempts: list[tuple[str, Callable[[], object]]] = [
        ("read Secrets", lambda: client.CoreV1Api(api).list_namespaced_secret(watched)),
        (
            "delete a Deployment",
            lambda: client.AppsV1Api(api).delete_namespaced_deployment("victim", watched),
        ),
        (
            "scale outside the watched namespaces",
            lambda: client.AppsV1Api(api).patch_namespaced_deployment_scale(
                "victim", "default", {"spec": {"replicas": 1}}
            ),
        ),
    ]
    for what, attempt in attempts:
        with pytest.raises(ApiException) as refused:
            attempt()
        assert refused.value.status == 403, f"{what}: {refused.value.status} {refused.value.reason}"
    assert client.AppsV1Api(cluster.api).read_namespaced_deployment("victim", watched)


def test_the_operator_running_as_the_chart_identity_scales_a_workload_and_fills_its_status(
    cluster: Cluster,
    installed: tuple[HelmRelease, str, str],
    operator_kubeconfig: str,
    gpu_util: GpuUtilization,
) -> None:
    _, watched, _ = installed
    world = World(cluster, watched)
    world.run_gpu_app(gpu_util, "chat", 2, 90)
    # Consolidation runs too (its permissions are exercised), but only for pools of this test: none.
    owned = ("--pool-selector", f"{OWNER_LABEL}={watched}")
    with running_operator(
        operator_kubeconfig, watched, cluster.prometheus_url, owned, interval=INTERVAL
    ) as op:
        cluster.apply(gpu_workload("chat", "chat", maxReplicas=3), watched)
        wait_for(lambda: world.replicas("chat") == 3, timeout=60, describe=lambda: world.describe("chat"))

        def status_filled() -> bool:
            status = world.workload("chat").get("status") or {}
            return bool(status.get("lastDecision")) and bool(status.get("conditions"))

        wait_for(status_filled, timeout=30, describe=lambda: world.describe("chat"))
        # New replicas start with a few idle samples in their averaging window; settled, it is 90%.
        wait_for(
            lambda: math.isclose(world.workload("chat")["status"]["utilization"]["aggregate"], 90, abs_tol=1),
            timeout=60,
            describe=lambda: world.describe("chat"),
        )
        wait_for(
            lambda: any("ceil(2×90/60)=3" in m for m in world.events("ScaleUp")),
            timeout=20,
            describe=lambda: str(world.events()),
        )
        log = op.log()
    assert "Forbidden" not in log and "403" not in log, f"a request was refused:\n{log[-4000:]}"


def test_replicas_find_each_other_through_the_charts_peering_object(
    cluster: Cluster, installed: tuple[HelmRelease, str, str], operator_kubeconfig: str
) -> None:
    release, watched, _ = installed
    peering = ("--peering-name", release.fullname, "--no-consolidation")
    with running_operator(
        operator_kubeconfig, watched, cluster.prometheus_url, peering, interval=INTERVAL, standalone=False
    ) as op:

        def announced() -> bool:
            out = cluster.kubectl("get", "clusterkopfpeering", release.fullname, "-o", "json", check=False)
            return out.returncode == 0 and bool(json.loads(out.stdout).get("status"))

        wait_for(announced, timeout=60, describe=lambda: op.log()[-3000:])
        log = op.log()
    assert "Forbidden" not in log and "403" not in log, f"a request was refused:\n{log[-4000:]}"


def test_helm_upgrade_changes_settings_and_rbac_and_uninstall_keeps_crds_and_workloads(
    cluster: Cluster, namespaces: Callable[[str], str], tmp_path: Path
) -> None:
    release_ns, watched = namespaces("upgrade"), namespaces("upgrade-watched")
    release = HelmRelease(f"up{secrets.token_hex(3)}", release_ns, cluster.kubeconfig)
    release.install(chart_values(cluster, [watched]))
    try:
        identity = service_account_kubeconfig(
            cluster.kubeconfig, release_ns, release.service_account, tmp_path / "kubeconfig"
        )
        evict = Access("create", "pods", "", watched, "eviction")
        assert can_i(identity, evict)

        release.upgrade(chart_values(cluster, [watched], interval=10, consolidation={"enabled": False}))
        assert release.status()["version"] == 2
        dep = client.AppsV1Api(cluster.api).read_namespaced_deployment(release.fullname, release_ns)
        env = {e.name: e.value for e in dep.spec.template.spec.containers[0].env}
        assert env["RIGHTSIZER_INTERVAL_SECONDS"] == "10"
        assert env["RIGHTSIZER_CONSOLIDATION__ENABLED"] == "false"
        # Without consolidation the identity may no longer evict pods.
        assert not can_i(identity, evict)

        # A user's workload; the chart does not own it and must leave it behind.
        cluster.apply(gpu_workload("keep-me", "chat"), watched)
        release.uninstall()
    finally:
        if release.installed():
            release.uninstall()
    assert not release.installed()
    for crd in CRDS:
        cluster.kubectl("get", "crd", crd)
    assert World(cluster, watched).workload("keep-me")["metadata"]["name"] == "keep-me"
    rbac = client.RbacAuthorizationV1Api(cluster.api)
    with pytest.raises(ApiException) as gone:
        rbac.read_cluster_role(release.fullname)
    assert gone.value.status == 404
    with pytest.raises(ApiException) as gone:
        client.AppsV1Api(cluster.api).read_namespaced_deployment(release.fullname, release_ns)
    assert gone.value.status == 404
    cluster.kubectl("delete", "gpuworkload", "keep-me", "-n", watched, "--timeout=30s")
