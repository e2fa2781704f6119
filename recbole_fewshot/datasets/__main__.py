"""``python -m recbole_fewshot.datasets NAME --raw FILE --out DIR``: convert a raw data set."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from recbole_fewshot.datasets import CONVERTERS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m recbole_fewshot.datasets",
        description="Convert a public raw data set into RecBole atomic files under OUT/NAME/.",
    )
    commands = parser.add_subparsers(dest="dataset", required=True)
    retail = commands.add_parser("online_retail", help="UCI Online Retail (.xlsx, .csv or .csv.gz)")
    retail.add_argument("--raw", required=True, help="the raw file: UCI's Online Retail.xlsx, or a .csv / .csv.gz of it")
    retail.add_argument("--out", required=True, help="folder that receives online_retail/online_retail.{inter,item}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module = importlib.import_module(CONVERTERS[args.dataset])
    try:
        conversion = module.convert(args.raw, args.out)
    except module.OnlineRetailError as error:
        print(f"python -m recbole_fewshot.datasets: error: {error}", file=sys.stderr)
        return 2
    for line in conversion.report_lines():
        print(line)
    print(f"wrote {args.out}/{args.dataset}/{args.dataset}.inter and .item")
    return 0


if __name__ == "__main__":
    sys.exit(main())
