"""A stored GPUNodePool's provider is built from the API's model of it, as the rest of the pool is."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from rightsizer.adapters.nodepools.base import ProviderError
from rightsizer.adapters.nodepools.clusterapi import ClusterApiProvider
from rightsizer.adapters.nodepools.karpenter import KarpenterProvider
from rightsizer.adapters.nodepools.kwok import KwokProvider
from rightsizer.adapters.nodepools.none import NoneProvider
from rightsizer.runtime.wiring import pool_provider
from tests.unit.planner_builders import gpu_pool

pytestmark = pytest.mark.unit

API = client.ApiClient()


def stored(provider: dict[str, Any], **spec: Any) -> dict[str, Any]:
    document = gpu_pool("a100", selector={"rightsizer.io/pool": "a100"}, provider=provider, **spec)
    document["status"] = {"conditions": "not a list"}  # what is in status never matters
    return document


def test_kwok_and_static_pools_create_nodes_of_their_template() -> None:
    template = {"labels": {"topology.kubernetes.io/zone": "zone-b"}, "capacity": {"cpu": "96"}}
    built = pool_provider(API, stored({"type": "kwok", "nodeTemplate": template}))
    assert isinstance(built, KwokProvider) and not built._static
    node = built.manifest("a100-new-0")
    assert node["metadata"]["labels"]["topology.kubernetes.io/zone"] == "zone-b"
    assert node["metadata"]["labels"]["rightsizer.io/pool"] == "a100"
    assert node["status"]["allocatable"]["cpu"] == "96"
    static = pool_provider(API, stored({"type": "static"}))
    assert isinstance(static, KwokProvider) and static._static


def test_clusterapi_karpenter_and_none_pools_name_what_they_drive() -> None:
    md = pool_provider(
        API, stored({"type": "clusterapi", "machineDeployment": {"namespace": "capi", "name": "md"}})
    )
    assert isinstance(md, ClusterApiProvider) and (md.namespace, md.machine_deployment) == ("capi", "md")
    kp = pool_provider(API, stored({"type": "karpenter", "nodePool": "gpu"}))
    assert isinstance(kp, KarpenterProvider) and (kp.node_pool, kp.gpus_per_node) == ("gpu", 8)
    assert isinstance(pool_provider(API, stored({"type": "none"})), NoneProvider)


def test_a_pool_the_model_refuses_builds_no_provider_and_says_which_field() -> None:
    with pytest.raises(ProviderError, match=r"spec\.provider\.nodePool"):
        pool_provider(API, stored({"type": "karpenter"}))
