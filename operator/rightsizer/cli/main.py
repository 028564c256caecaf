"""`rightsizer` — one console script, one module per subcommand."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys

# Each module exposes register(subparsers) and sets `func` on its parser.
SUBCOMMANDS = ("run", "plan", "report", "backtest", "metrics", "crds", "fake_dcgm")


# The local cluster's tooling (rightsizer.devcluster) is not in the operator image: its commands are
# offered only where it is installed.
DEV_SUBCOMMANDS = frozenset({"fake_dcgm"})


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """All subcommands, or only ``command``: importing the others (kopf and the Kubernetes client for
    `run`) takes about a second that `rightsizer plan --snapshot` need not pay."""
    parser = argparse.ArgumentParser(
        prog="rightsizer",
        description="Right-size GPU workloads from real GPU activity, consolidate GPU nodes, show the cost.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        if command is not None and name != command:
            continue
        if name in DEV_SUBCOMMANDS and importlib.util.find_spec("rightsizer.devcluster") is None:
            continue
        importlib.import_module(f"rightsizer.cli.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else argv
    command = words[0] if words and words[0] in SUBCOMMANDS else None
    args = build_parser(command).parse_args(words)
    try:
        return int(args.func(args))
    except BrokenPipeError:
        # `rightsizer plan | head` ends quietly, like any Unix filter. The process's SIGPIPE disposition
        # is left alone: main() also runs inside other processes (tests), which a reset would let a
        # closed socket kill.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
