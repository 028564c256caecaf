"""kopf's peering resources: replicas of the operator announce themselves there, and only the one
with the highest priority acts (the others pause). Shipped with our CRDs so `kubectl apply -f crds/`
and the chart install everything the operator needs."""

from __future__ import annotations

from typing import Any

PEERING_GROUP = "kopf.dev"


def _peering_crd(scope: str, kind: str, plural: str) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{PEERING_GROUP}"},
        "spec": {
            "group": PEERING_GROUP,
            "scope": scope,
            "names": {"kind": kind, "plural": plural, "singular": plural[:-1]},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                            },
                        }
                    },
                }
            ],
        },
    }


def peering_crds() -> dict[str, dict[str, Any]]:
    """File name -> CRD of kopf's cluster-wide and namespaced peering resources."""
    return {
        f"{PEERING_GROUP}_clusterkopfpeerings.yaml": _peering_crd(
            "Cluster", "ClusterKopfPeering", "clusterkopfpeerings"
        ),
        f"{PEERING_GROUP}_kopfpeerings.yaml": _peering_crd("Namespaced", "KopfPeering", "kopfpeerings"),
    }
