"""Times as Kubernetes writes them: RFC 3339 with a zone (``2026-11-25T10:00:00Z``).

The one grammar every reader uses (object timestamps, conditions, annotations, drain intents,
snapshots, ``--now``), so a time one part of the operator accepts is never one another refuses.
Apart from the status modules because conditions, the workload status, pod annotations, the node
readers and the snapshot parser all read or write the same form.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

# Date, time with seconds, optional fraction, and a zone: a time without a zone has no meaning the
# operator could rely on (the reader's zone is a guess), so it is not a time here.
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


def format_time(value: datetime) -> str:
    """Whole seconds in UTC, as Kubernetes writes status times."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_precise(value: datetime) -> str:
    """RFC 3339 in UTC with the value's own precision: a recorded sample's age (and so its staleness
    in a replay) would move if it were rounded to seconds."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_time(value: object) -> datetime | None:
    """An RFC 3339 time with a zone; None for anything else (missing, a number, hand-edited, no zone)."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not _RFC3339.fullmatch(text):
        return None
    try:
        return datetime.fromisoformat(text.replace("z", "Z").replace("t", "T"))
    except ValueError:  # a shape that matches with an impossible date (month 13)
        return None
