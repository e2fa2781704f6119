"""``python -m recbole_fewshot.datasets SOURCE ...``: the same converters as ``recbole-fewshot convert``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from recbole_fewshot.datasets import add_converter_parsers, run_converter

PROG = "python -m recbole_fewshot.datasets"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Convert raw data into RecBole atomic files under OUT/NAME/.",
    )
    add_converter_parsers(parser.add_subparsers(dest="source", required=True))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_converter(build_parser().parse_args(argv), PROG)


if __name__ == "__main__":
    sys.exit(main())
