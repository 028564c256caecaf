"""`rightsizer fake-dcgm-exporter`: the fake dcgm-exporter used by the local cluster and the demo."""

from __future__ import annotations

import argparse

from rightsizer.devcluster import fake_dcgm


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "fake-dcgm-exporter",
        help="serve dcgm-exporter metrics for a cluster's fake GPUs, driven by scenario rules",
        description=fake_dcgm.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fake_dcgm.add_arguments(parser)
    parser.set_defaults(func=fake_dcgm.run)
