"""`rightsizer` — one console script, one module per subcommand."""

from __future__ import annotations

import argparse
import importlib
import signal
import sys

# Each module exposes register(subparsers) and sets `func` on its parser.
SUBCOMMANDS = ("run", "plan", "report", "metrics", "crds", "fake_dcgm")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rightsizer",
        description="Right-size GPU workloads from real GPU activity, consolidate GPU nodes, show the cost.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"rightsizer.cli.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    # `rightsizer plan | head` should end quietly, like any Unix filter, not with a traceback.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
