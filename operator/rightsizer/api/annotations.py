"""Annotation keys that are part of the contract between the operator's parts (and its users)."""

from __future__ import annotations

WORKLOAD_ANNOTATION = "rightsizer.io/workload"
"""On each pod of a managed target: the GPUWorkload (same namespace) it belongs to. Written by the
workload loop; read by consolidation (protection, training) and by `rightsizer report`."""
