"""What `hack/cluster.sh env` prints, read back by the tests and the live benchmark."""

from __future__ import annotations

import shlex


def exported(script: str) -> dict[str, str]:
    """The variables the script's `export NAME=VALUE` lines set, read as a shell would; PATH is the
    shell's own business and left out."""
    out: dict[str, str] = {}
    for line in script.splitlines():
        words = shlex.split(line)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            key, value = words[1].split("=", 1)
            if key != "PATH":
                out[key] = value
    return out
