"""Times as Kubernetes writes them in status and annotations: RFC 3339 in UTC, whole seconds
(``2026-11-25T10:00:00Z``).

Apart from the status modules because conditions, the workload status, pod annotations and the node
readers all write or read the same form.
"""

from __future__ import annotations

from datetime import UTC, datetime


def format_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: object) -> datetime | None:
    """Read a time :func:`format_time` wrote; None for anything else (a missing or hand-edited value)."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None
