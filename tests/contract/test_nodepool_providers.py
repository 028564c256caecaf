"""One contract for every node-pool provider, run against the fake and the real API server.

kwok drives real (fake-kubelet) Node objects. karpenter runs against the real Karpenter (its kwok
cloud provider, tests/support/karpenter.py). clusterapi runs against Cluster API's real
MachineDeployment/MachineSet/Machine CRDs (tests/support/clusterapi.py), so every object is one its
schema accepts: the API server is real, the controller is not, so the test plays its part (creating
the Machine that backs a node) and checks what the provider asked for.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from rightsizer.adapters.nodepools.base import NodePoolProvider, ScaleUpUnsupported
from rightsizer.adapters.nodepools.clusterapi import DELETE_MACHINE_ANNOTATION, ClusterApiProvider
from rightsizer.adapters.nodepools.fake import FakeProvider
from rightsizer.adapters.nodepools.karpenter import KarpenterProvider
from rightsizer.adapters.nodepools.kwok import KwokProvider
from tests.support.cluster import Cluster, wait_for
from tests.support.clusterapi import GROUP as CAPI_GROUP
from tests.support.clusterapi import VERSION as CAPI_VERSION
from tests.support.clusterapi import install_crds, machine, machine_deployment
from tests.support.karpenter import Karpenter

OWNER_LABEL = "rightsizer.io/test-owner"


@dataclass
class World:
    provider: NodePoolProvider
    make_node: Callable[[], str]  # a node backed by the provider's machinery
    backed: Callable[[str], bool]  # is the node still backed (not marked/deleted)?


def fake_world() -> World:
    provider = FakeProvider("pool", ["n-0", "n-1"])
    counter = iter(range(100, 10_000))

    def make() -> str:
        name = f"n-{next(counter)}"
        provider.nodes.append(name)
        return name

    return World(provider, make, lambda n: n in provider.nodes)


def kwok_world(cluster: Cluster, owner: str) -> World:
    provider = KwokProvider(
        cluster.api,
        pool=owner,
        node_selector={"rightsizer.io/pool": owner},
        gpu_model="NVIDIA-L4",
        gpus_per_node=4,
        template={
            "labels": {OWNER_LABEL: owner},
            "taints": [{"key": "rightsizer.io/test", "value": owner, "effect": "NoSchedule"}],
        },
    )
    core = client.CoreV1Api(cluster.api)

    def make() -> str:
        return provider.add_nodes(1)[0]

    def backed(name: str) -> bool:
        try:
            core.read_node(name)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    return World(provider, make, backed)


def clusterapi_world(cluster: Cluster, owner: str, namespace: str) -> World:
    install_crds(cluster)
    custom = client.CustomObjectsApi(cluster.api)
    deployment = machine_deployment(owner, 0)
    custom.create_namespaced_custom_object(
        CAPI_GROUP, CAPI_VERSION, namespace, "machinedeployments", deployment
    )
    provider = ClusterApiProvider(cluster.api, pool=owner, namespace=namespace, machine_deployment=owner)

    def make() -> str:
        # Playing the MachineSet controller: one more replica, one more Machine with its node.
        node = f"{owner}-{secrets.token_hex(2)}"
        scale = provider.desired_nodes()
        custom.patch_namespaced_custom_object_scale(
            CAPI_GROUP,
            CAPI_VERSION,
            namespace,
            "machinedeployments",
            owner,
            {"spec": {"replicas": scale + 1}},
        )
        body = machine(deployment, node)
        del body["metadata"]["finalizers"]  # nothing here plays the Machine controller that removes it
        custom.create_namespaced_custom_object(CAPI_GROUP, CAPI_VERSION, namespace, "machines", body)
        # The real Machine has a status subresource: the node reference is set there, as its controller does.
        node_ref = {"status": {"nodeRef": {"apiVersion": "v1", "kind": "Node", "name": node}}}
        custom.patch_namespaced_custom_object_status(
            CAPI_GROUP, CAPI_VERSION, namespace, "machines", node, node_ref
        )
        return node

    def backed(node: str) -> bool:
        m = custom.get_namespaced_custom_object(CAPI_GROUP, CAPI_VERSION, namespace, "machines", node)
        return DELETE_MACHINE_ANNOTATION not in (m["metadata"].get("annotations") or {})

    return World(provider, make, backed)


def karpenter_world(cluster: Cluster, karpenter: Karpenter) -> World:
    """The real Karpenter: a node is made by creating a NodeClaim from the NodePool's template, as
    Karpenter's provisioner would; it is backed while its NodeClaim exists and is not being deleted."""
    pool = karpenter.node_pool("gpu-l4-x4")
    provider = KarpenterProvider(cluster.api, pool=pool, node_pool=pool, gpus_per_node=4)
    custom = client.CustomObjectsApi(cluster.api)

    def backed(node: str) -> bool:
        claims = custom.list_cluster_custom_object("karpenter.sh", "v1", "nodeclaims").get("items") or []
        return any(
            (c.get("status") or {}).get("nodeName") == node and not c["metadata"].get("deletionTimestamp")
            for c in claims
        )

    return World(provider, lambda: karpenter.launch(pool), backed)


@pytest.fixture(
    params=[
        pytest.param("fake", marks=pytest.mark.unit),
        pytest.param("kwok", marks=pytest.mark.e2e),
        pytest.param("clusterapi", marks=pytest.mark.e2e),
        pytest.param("karpenter", marks=pytest.mark.e2e),
    ]
)
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    if request.param == "fake":
        yield fake_world()
        return
    cluster: Cluster = request.getfixturevalue("cluster")
    owner = f"cp{secrets.token_hex(3)}"
    try:
        if request.param == "kwok":
            yield kwok_world(cluster, owner)
        elif request.param == "clusterapi":
            yield clusterapi_world(cluster, owner, request.getfixturevalue("namespace"))
        else:
            yield karpenter_world(cluster, request.getfixturevalue("karpenter"))
    finally:
        cluster.kubectl("delete", "nodes", "-l", f"{OWNER_LABEL}={owner}", "--wait=false", check=False)


def test_removing_a_node_takes_it_out_of_the_pool_once(world: World) -> None:
    first, second = world.make_node(), world.make_node()
    before = world.provider.desired_nodes()
    world.provider.remove_node(first)
    assert world.provider.desired_nodes() == (None if before is None else before - 1)
    assert not world.backed(first)
    assert world.backed(second), "only the named node goes"
    after = world.provider.desired_nodes()
    world.provider.remove_node(first)  # a resumed removal after a crash changes nothing more
    assert world.provider.desired_nodes() == after


def test_removing_an_unknown_node_is_not_an_error(world: World) -> None:
    before = world.provider.desired_nodes()
    world.provider.remove_node("no-such-node")
    assert world.provider.desired_nodes() == before


def test_adding_nodes_raises_the_pool_or_says_the_platform_does_it(world: World) -> None:
    before = world.provider.desired_nodes()
    if not world.provider.can_scale_up:
        with pytest.raises(ScaleUpUnsupported):
            world.provider.add_nodes(2)
        return
    world.provider.add_nodes(2)
    wait_for(lambda: world.provider.desired_nodes() == (before or 0) + 2, timeout=30)


def test_describe_names_the_provider(world: World) -> None:
    assert world.provider.type in world.provider.describe()


@pytest.mark.e2e
def test_karpenter_removal_deletes_the_nodeclaim_and_karpenter_removes_the_node(
    cluster: Cluster, karpenter: Karpenter
) -> None:
    pool = karpenter.node_pool("gpu-l4-x4")
    limits_before = karpenter.custom.get_cluster_custom_object("karpenter.sh", "v1", "nodepools", pool)[
        "spec"
    ]["limits"]
    node = karpenter.launch(pool)
    KarpenterProvider(cluster.api, pool=pool, node_pool=pool, gpus_per_node=4).remove_node(node)
    # Karpenter's termination flow, not the operator, deletes the Node.
    wait_for(
        lambda: node not in {n.metadata.name for n in karpenter.nodes(pool)},
        timeout=90,
        describe=karpenter.log,
    )
    assert karpenter.claims(pool) == []
    pool_after = karpenter.custom.get_cluster_custom_object("karpenter.sh", "v1", "nodepools", pool)
    assert pool_after["spec"]["limits"] == limits_before, "the user's NodePool limits are left alone"


@pytest.mark.e2e
def test_kwok_nodes_join_the_pool_with_its_gpus_and_template(cluster: Cluster) -> None:
    owner = f"cp{secrets.token_hex(3)}"
    try:
        world = kwok_world(cluster, owner)
        name = world.make_node()
        node = client.CoreV1Api(cluster.api).read_node(name)
        assert node.metadata.labels["rightsizer.io/pool"] == owner
        assert node.metadata.labels["nvidia.com/gpu.product"] == "NVIDIA-L4"
        assert node.status.allocatable["nvidia.com/gpu"] == "4"
        assert "rightsizer.io/test" in [t.key for t in node.spec.taints]
    finally:
        cluster.kubectl("delete", "nodes", "-l", f"{OWNER_LABEL}={owner}", "--wait=false", check=False)


@pytest.mark.e2e
def test_clusterapi_removal_interrupted_after_marking_converges(cluster: Cluster, namespace: str) -> None:
    owner = f"cp{secrets.token_hex(3)}"
    world = clusterapi_world(cluster, owner, namespace)
    first, second = world.make_node(), world.make_node()
    provider = world.provider
    assert isinstance(provider, ClusterApiProvider)
    # A crash right after the Machine was marked: the replicas were never lowered.
    set_replicas = provider._set_replicas
    provider._set_replicas = lambda replicas: None  # type: ignore[method-assign]
    provider.remove_node(first)
    assert provider.desired_nodes() == 2 and not world.backed(first)
    provider._set_replicas = set_replicas  # type: ignore[method-assign]
    provider.remove_node(first)  # the restarted operator resumes the removal
    assert provider.desired_nodes() == 1
    provider.remove_node(first)  # and once more changes nothing
    assert provider.desired_nodes() == 1 and world.backed(second)
