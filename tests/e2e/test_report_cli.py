"""`rightsizer report` reads the cluster as the operator's consolidation does: same reader, same pools
and prices."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout

import pytest

from rightsizer.adapters.nodepools.kwok_nodes import L4_X4
from rightsizer.cli.main import main
from tests.support.cluster import Cluster
from tests.support.fleet import Fleet

pytestmark = pytest.mark.e2e


def report(cluster: Cluster) -> dict[str, object]:
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["report", "--kubeconfig", cluster.kubeconfig, "--output", "json"]) == 0
    document: dict[str, object] = json.loads(out.getvalue())
    return document


def test_report_prices_pools_from_their_gpunodepools(cluster: Cluster, fleet: Fleet) -> None:
    fleet.add_nodes("l4", L4_X4, 2)
    fleet.node_pool("l4", L4_X4, price=0.8)
    pools = {p["pool"]: p for p in report(cluster)["pools"]}  # type: ignore[attr-defined]
    row = pools[fleet.pool("l4")]
    assert (row["nodes"], row["gpus_allocatable"]) == (2, 8)
    assert row["cost_per_hour"] == pytest.approx(6.4)  # 8 GPUs x 0.80, the pool's own price
    assert row["idle_cost_per_hour"] == pytest.approx(6.4)  # nothing runs on them
