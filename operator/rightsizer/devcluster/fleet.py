"""The fake GPU fleet of the local cluster: three pools that look like a real GPU cluster.

`python -m rightsizer.devcluster.fleet` prints the Node manifests as a YAML List for
`kubectl apply -f -`, so the real API server validates them like any other object.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import yaml

from rightsizer.adapters.nodepools.kwok_nodes import (
    A100_80GB_X8,
    CPU_32,
    L4_X4,
    NodeShape,
    fake_node_manifest,
)

ZONES = ("us-east-1a", "us-east-1b")

# pool name -> (shape, node count)
DEFAULT_FLEET: dict[str, tuple[NodeShape, int]] = {
    "a100": (A100_80GB_X8, 4),
    "l4": (L4_X4, 4),
    "cpu": (CPU_32, 2),
}


def fleet_manifests(fleet: dict[str, tuple[NodeShape, int]] | None = None) -> list[dict[str, Any]]:
    nodes = []
    for pool, (shape, count) in (fleet or DEFAULT_FLEET).items():
        for i in range(count):
            nodes.append(fake_node_manifest(f"{pool}-node-{i}", shape, pool, ZONES[i % len(ZONES)]))
    return nodes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=int, default=1, help="multiply every pool's node count")
    args = parser.parse_args(argv)
    fleet = {pool: (shape, count * args.scale) for pool, (shape, count) in DEFAULT_FLEET.items()}
    yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": fleet_manifests(fleet)}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
