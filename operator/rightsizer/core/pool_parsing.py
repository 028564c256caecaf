"""A GPUNodePool duration read from its stored document, naming the field when it is not one.

GPUNodePools themselves are validated against the API's model and converted into the core's
:class:`~rightsizer.core.pools.PoolPolicy` in ``rightsizer.runtime.mapping``; this is left for the
pool pass's ``scaleDownAfter``, which it still reads from the stored document.
"""

from __future__ import annotations

from datetime import timedelta

from rightsizer.api import durations
from rightsizer.core.errors import InvalidPool


def parse_duration(text: object, where: str) -> timedelta:
    """A duration as the CRD accepts it (``30s``, ``10m``, ``1h30m``), or :class:`InvalidPool`."""
    try:
        if not isinstance(text, str):
            raise durations.InvalidDuration(text)
        return durations.parse_duration(text)
    except durations.InvalidDuration as exc:
        raise InvalidPool(f"{where}: {exc}") from exc
