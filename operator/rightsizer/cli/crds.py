"""`rightsizer crds`: regenerate the CRDs in crds/ from the API models, or check they are fresh."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rightsizer.api import crdgen, docgen


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "crds",
        help="generate the CustomResourceDefinitions from the API models",
        description=(
            "Write one CRD YAML per resource (GPUWorkload, GPUNodePool) into the output directory. "
            "With --check, write nothing and exit 1 if any file is stale."
        ),
    )
    parser.add_argument(
        "--output-dir", type=Path, default=Path("crds"), help="directory of the CRD files (default: crds)"
    )
    parser.add_argument(
        "--check", action="store_true", help="exit 1, listing the files, if they differ from the models"
    )
    parser.add_argument("--docs", type=Path, metavar="FILE", help="also write the field reference (Markdown)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    output_dir: Path = args.output_dir
    if args.check:
        problems = crdgen.stale(output_dir)
        for problem in problems:
            print(f"stale: {problem}", file=sys.stderr)
        if problems:
            print("run `rightsizer crds` to regenerate them", file=sys.stderr)
            return 1
        print(f"{output_dir}: CRDs are up to date")
        return 0
    for path in crdgen.write(output_dir):
        print(f"wrote {path}")
    if args.docs:
        args.docs.parent.mkdir(parents=True, exist_ok=True)
        args.docs.write_text(docgen.api_reference() + "\n", encoding="utf-8")
        print(f"wrote {args.docs}")
    return 0
