"""The data side: converters from raw data to RecBole atomic files, and item text embeddings.

``recbole-fewshot convert SOURCE ... --out DIR`` (also ``python -m recbole_fewshot.datasets SOURCE ...``)
writes ``DIR/NAME/NAME.inter`` (and ``.item``), ready for ``recbole-fewshot split --dataset NAME
--data-path DIR``. Sources:

* ``table``: your own orders table and product table, CSV or Parquet (:mod:`recbole_fewshot.datasets.table`);
* ``online_retail``: the UCI Online Retail sheet (:mod:`recbole_fewshot.datasets.online_retail`).

``recbole-fewshot embed`` adds sentence-transformers vectors of item text fields to a dataset's ``.item``
file (:mod:`recbole_fewshot.datasets.text`).
"""

from __future__ import annotations

import argparse
import sys


def _columns(text: str) -> tuple[str, ...]:
    """``title,description`` -> ``("title", "description")``."""
    return tuple(column.strip() for column in text.split(",") if column.strip())


def add_converter_parsers(sources: argparse._SubParsersAction) -> None:
    """One subcommand per source, on ``sources`` (the subparsers of ``convert``)."""
    retail = sources.add_parser("online_retail", help="UCI Online Retail (.xlsx, .csv or .csv.gz)")
    retail.add_argument("--raw", required=True, help="the raw file: UCI's Online Retail.xlsx, or a .csv / .csv.gz of it")
    retail.add_argument("--out", required=True, help="folder that receives online_retail/online_retail.{inter,item}")

    table = sources.add_parser("table", help="your own orders table (and product table), CSV or Parquet",
                               description="Convert an orders table and a product table into RecBole atomic "
                                           "files; the rules are in docs/your-data.md.")
    orders = table.add_argument_group("orders")
    orders.add_argument("--interactions", metavar="FILE", required=True, help="the orders table (.csv, .csv.gz, .parquet)")
    orders.add_argument("--user", metavar="COL", required=True, help="column of the customer id")
    orders.add_argument("--item", metavar="COL", required=True, help="column of the product id")
    orders.add_argument("--time", metavar="COL", default=None, help="column of the order time (dates or unix seconds); "
                                                     "without it, splits choose new items at random")
    orders.add_argument("--quantity", metavar="COL", default=None,
                        help="column of the quantity; rows with quantity <= 0 are dropped")
    orders.add_argument("--keep-repeats", action="store_true",
                        help="keep every purchase of a product by a user (default: the first, quantities summed)")
    products = table.add_argument_group("products")
    products.add_argument("--items", metavar="FILE", default=None, help="the product table (.csv, .csv.gz, .parquet)")
    products.add_argument("--item-key", metavar="COL", default=None, help="the product table's id column (default: --item)")
    products.add_argument("--text", type=_columns, default=(), metavar="COL[,COL]",
                          help="text columns (title, description): lowercased words, one token_seq field each")
    products.add_argument("--category", type=_columns, default=(), metavar="COL[,COL]",
                          help="category columns (category, brand): one token field each")
    products.add_argument("--category-separator", default=None, metavar="SEP",
                          help="split category values on SEP (Kitchen|Mugs) into token_seq fields")
    products.add_argument("--numeric", type=_columns, default=(), metavar="COL[,COL]",
                          help="number columns (price): one float field each")
    products.add_argument("--launch", metavar="COL", default=None,
                          help="column of the launch date: the time split orders new items by it")
    products.add_argument("--keep-unlisted", action="store_true",
                          help="keep orders of products the product table does not list (default: dropped)")
    table.add_argument("--name", required=True, help="dataset name: files NAME/NAME.inter and NAME/NAME.item")
    table.add_argument("--out", required=True, help="folder that receives NAME/")


def run_converter(args: argparse.Namespace, prog: str) -> int:
    """Run the converter ``args.source`` names; print its summary (exit 0) or its error (exit 2)."""
    from recbole_fewshot.datasets.table import ConversionError, TableColumns

    try:
        if args.source == "online_retail":
            from recbole_fewshot.datasets import online_retail

            name, written = online_retail.NAME, ".inter and .item"
            lines = online_retail.convert(args.raw, args.out).report_lines()
        else:
            from recbole_fewshot.datasets import table

            name, written = args.name, ".inter and .item" if args.items else ".inter"
            columns = TableColumns(
                user=args.user, item=args.item, time=args.time, quantity=args.quantity, item_key=args.item_key,
                text=args.text, category=args.category, numeric=args.numeric, launch=args.launch,
                category_separator=args.category_separator, keep_repeats=args.keep_repeats,
                keep_unlisted=args.keep_unlisted,
            )
            lines = table.convert(args.interactions, args.out, name, columns, items=args.items).report_lines(name)
    except ConversionError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    for line in lines:
        print(line)
    print(f"wrote {args.out}/{name}/{name}{written}")
    return 0
