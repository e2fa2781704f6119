"""Your own catalogue to RecBole atomic files: an orders table and, optionally, a product table.

Both tables are ``.csv`` (``.csv.gz``; UTF-8, a spreadsheet's byte-order mark is fine) or ``.parquet``
(needs pyarrow). Every column is named on the command line::

    recbole-fewshot convert table --interactions orders.csv --user customer_id --item sku --time ordered_at \\
        [--quantity qty] [--items products.csv --text title,description --category category,brand \\
        --numeric price --launch launch_date] --name shop --out dataset

Written files, under ``OUT/NAME/``:

* ``NAME.inter``: ``user_id:token``, ``item_id:token``, ``timestamp:float`` (with ``--time``: unix
  seconds, whole seconds for dates) and ``quantity:float`` (with ``--quantity``); ordered by time, then
  by the order of the input rows.
* ``NAME.item`` (with ``--items``), one row per ordered product, sorted by id: ``item_id:token``; each
  ``--text`` column as ``<column>:token_seq``, its words lowercased with every character that is not a
  letter or digit turned into a space, as the Online Retail titles (the content models and ``embed``
  read these); each ``--category`` column as ``<column>:token`` (the value as it is), or
  ``<column>:token_seq`` with ``--category-separator`` (``Kitchen|Mugs`` becomes two tokens, spaces
  inside a part become ``_``); each ``--numeric`` column as ``<column>:float``; ``--launch`` as
  ``launch_time:float`` (unix seconds), which the ``time`` split policy orders new items by.
  Field names are the column names lowercased, other characters than letters and digits as ``_``.
  Empty values stay empty (RecBole reads a missing token as padding, a missing number as the mean).

Times are ISO dates (``2023-03-01 14:22``, with or without a time zone), dates in the format pandas
infers (month first: ``3/1/2023 14:22``), or numbers, which are taken as unix seconds. Times without a
zone are read as UTC. Tabs, newlines and carriage returns in any written value become spaces and
double quotes become single quotes, so RecBole's reader sees one row per line and no quoted fields.

Rules, applied in this order; the summary prints how many rows each one removed:

1. **returns** (``--quantity``): rows whose quantity is 0 or less (returns, cancellations, stock
   corrections) are dropped.
2. **unlisted products** (``--items``): orders of a product the product table does not list are dropped
   (a product without content cannot be recommended from its content); ``--keep-unlisted`` keeps them.
3. **repeats**: a user who bought one product several times keeps one interaction, the first by time
   (without ``--time``: the first row), with the summed quantity; ``--keep-repeats`` keeps every row.
   The few-shot split counts a user's first purchase of a product only either way.

Bad input is refused with one line naming the file, the column and the fix: a missing column, an empty
table, an empty user or product id, a time that is no date, a number that is no number, a product
listed twice. Nothing is written unless the whole conversion succeeds; the files are staged next to
their target and renamed into place.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from recbole_fewshot.data.atomic import write_atomic
from recbole_fewshot.data.split import LAUNCH_FIELD

CSV_SUFFIXES = (".csv", ".csv.gz")
PARQUET_SUFFIXES = (".parquet", ".pq")
RESERVED_FIELDS = ("user_id", "item_id", "timestamp", "quantity", LAUNCH_FIELD)


class ConversionError(ValueError):
    """Unusable input: the message names the file, the column and the fix."""


# --- shared by every converter ----------------------------------------------------------------------

def title_words(text: str) -> str:
    """Lowercased words of a text, joined by single spaces (a RecBole ``token_seq``): apostrophes are
    dropped, every other character that is not a letter or digit separates words."""
    text = text.lower().replace("'", "").replace("\u2019", "")
    return " ".join(re.sub(r"[\W_]+", " ", text).split())


def format_number(value: float) -> str:
    """A float as written to an atomic file (ten significant digits)."""
    return f"{value:.10g}"


def parse_times(values: pd.Series) -> pd.Series:
    """Dates as UTC datetimes (NaT where unreadable; a time without a zone is UTC): ISO first, otherwise the
    format pandas infers (month first)."""
    times = pd.to_datetime(values, format="ISO8601", errors="coerce", utc=True)
    if times.isna().any():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            times = pd.to_datetime(values, errors="coerce", utc=True)
    return times


def unix_seconds(values: pd.Series) -> pd.Series:
    """Dates (see :func:`parse_times`; a time without a zone is UTC) as whole unix seconds; NaN where unreadable."""
    times = parse_times(values).dt.tz_localize(None)
    return ((times - pd.Timestamp("1970-01-01")) // pd.Timedelta(seconds=1)).astype(float)


@contextmanager
def staged_folder(out: str | os.PathLike, name: str) -> Iterator[Path]:
    """A staging folder inside ``out/name``; on a clean exit every file in it is renamed into ``out/name``,
    on an error nothing is, and the staging folder is removed either way."""
    folder = Path(out) / name
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder, prefix=f".{name}.staging."))
    try:
        yield staging
        for path in sorted(staging.iterdir()):
            os.replace(path, folder / path.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# --- reading ----------------------------------------------------------------------------------------

def _cell_text(value) -> str:
    """One Parquet cell as the text a CSV export would hold (``3``, not ``3.0``, for a whole float)."""
    if value is None or value is pd.NA or value is pd.NaT or (isinstance(value, (float, np.floating)) and np.isnan(value)):
        return ""
    if isinstance(value, (float, np.floating)):
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return str(value)


def read_table(path: str | os.PathLike, option: str) -> pd.DataFrame:
    """Read a CSV or Parquet table as text (empty string for a missing value). ``option`` is the command-line
    option that named the file, for the error messages."""
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{path}: no such file (--{option})")
    lower = path.name.lower()
    if lower.endswith(PARQUET_SUFFIXES):
        try:
            table = pd.read_parquet(path)
        except ImportError as error:
            raise ConversionError(
                f"{path}: reading Parquet needs pyarrow, which is not installed: `pip install pyarrow`, "
                "or export the table as CSV") from error
        return table.astype(object).apply(lambda column: column.map(_cell_text))
    if not lower.endswith(CSV_SUFFIXES):
        raise ConversionError(
            f"{path}: unknown file type (--{option}); the converter reads {', '.join(CSV_SUFFIXES + PARQUET_SUFFIXES)}")
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except pd.errors.EmptyDataError as error:
        raise ConversionError(f"{path}: the file is empty (--{option}); export the table with its header row") from error
    except UnicodeDecodeError as error:
        raise ConversionError(f"{path}: not UTF-8 text (--{option}); save the file as UTF-8 CSV") from error
    except pd.errors.ParserError as error:
        reason = str(error).strip().splitlines()[-1]
        raise ConversionError(f"{path}: not a readable CSV (--{option}): {reason}; export it again as plain CSV") from error


# --- the conversion ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class TableColumns:
    """Which columns of the orders and product tables hold what, and the rules that differ between shops."""

    user: str
    item: str
    time: str | None = None
    quantity: str | None = None
    item_key: str | None = None  # the product table's id column; default: ``item``
    text: tuple[str, ...] = ()
    category: tuple[str, ...] = ()
    numeric: tuple[str, ...] = ()
    launch: str | None = None
    category_separator: str | None = None
    keep_repeats: bool = False
    keep_unlisted: bool = False

    def product_options(self) -> list[str]:
        """The product-table options that are set (they need a product table)."""
        given = {"item-key": self.item_key, "text": self.text, "category": self.category, "numeric": self.numeric,
                 "launch": self.launch, "category-separator": self.category_separator,
                 "keep-unlisted": self.keep_unlisted}
        return [f"--{option}" for option, value in given.items() if value]


@dataclass
class TableConversion:
    """The converted tables (values as written) and what each rule found."""

    inter: pd.DataFrame
    inter_header: list[str]
    item: pd.DataFrame | None
    item_header: list[str] | None
    columns: TableColumns
    order_rows: int
    #: rows each rule found: ``returns`` (dropped), ``unlisted`` and ``repeats`` (dropped unless kept by a flag)
    found: dict[str, int] = field(default_factory=dict)
    products_without_orders: int = 0

    def report_lines(self, name: str) -> list[str]:
        lines = [f"{name}: {self.order_rows} order rows"]
        if "returns" in self.found:
            lines.append(f"  dropped {self.found['returns']:>7} rows with quantity <= 0 (returns)")
        if "unlisted" in self.found:
            action = "kept   " if self.columns.keep_unlisted else "dropped"
            lines.append(f"  {action} {self.found['unlisted']:>7} rows whose product is not in the product table")
        action = "kept   " if self.columns.keep_repeats else "merged "
        lines.append(f"  {action} {self.found['repeats']:>7} repeated (user, item) rows"
                     + ("" if self.columns.keep_repeats else " into the first purchase"))
        lines.append(f"  wrote {len(self.inter)} interactions, {self.inter['user_id'].nunique()} users, "
                     f"{self.inter['item_id'].nunique()} items")
        if self.item is not None:
            lines.append(f"  product table: {len(self.item)} ordered products written, "
                         f"{self.products_without_orders} without orders left out")
        if "timestamp" in self.inter.columns:
            seconds = self.inter["timestamp"].astype(float)
            first, last = (pd.Timestamp(value, unit="s").strftime("%Y-%m-%d %H:%M") for value in (seconds.min(), seconds.max()))
            lines.append(f"  time range {first} to {last} UTC")
        else:
            lines.append("  no timestamps: splits of this dataset choose new items at random (policy random)")
        return lines


def safe_text(values: pd.Series) -> pd.Series:
    """Values RecBole's reader takes as they are: tabs and line breaks become spaces, ``"`` becomes ``'``, trimmed."""
    return values.str.replace(r"[\t\r\n]", " ", regex=True).str.replace('"', "'", regex=False).str.strip()


def field_name(column: str) -> str:
    """A column's RecBole field name: lowercased, runs of other characters than letters and digits as ``_``."""
    return re.sub(r"[\W_]+", "_", column.lower()).strip("_")


def _require_columns(table: pd.DataFrame, wanted: dict[str, str], source: str) -> None:
    if table.empty:
        raise ConversionError(f"{source}: the table has no rows; export it with its data")
    for column, option in wanted.items():
        if column not in table.columns:
            raise ConversionError(
                f"{source}: no column {column!r} (--{option}); the columns are {list(table.columns)}: "
                f"pass --{option} one of them")


def _ids(table: pd.DataFrame, column: str, option: str, source: str) -> pd.Series:
    values = safe_text(table[column])
    empty = values == ""
    if empty.any():
        raise ConversionError(
            f"{source}: column {column!r} (--{option}) is empty in {int(empty.sum())} row(s), the first is data row "
            f"{int(np.flatnonzero(empty.to_numpy())[0]) + 1}: fill in the ids or drop those rows")
    return values


def _seconds(table: pd.DataFrame, column: str, option: str, source: str, allow_empty: bool) -> pd.Series:
    """Unix seconds of a time column: numbers as they are, dates parsed; NaN for an allowed empty value."""
    values = table[column].str.strip()
    empty = values == ""
    numbers = pd.to_numeric(values[~empty], errors="coerce")
    if numbers.notna().all():
        seconds = numbers.astype(float)
    else:
        seconds = unix_seconds(values[~empty])
    bad = seconds.isna()
    if bad.any() or (empty.any() and not allow_empty):
        example = values[~empty][bad].iloc[0] if bad.any() else ""
        count = int(bad.sum()) + (0 if allow_empty else int(empty.sum()))
        raise ConversionError(
            f"{source}: column {column!r} (--{option}) has {count} value(s) that are no date or unix time, "
            f"e.g. {example!r}: write dates as 2023-03-01 14:22 (or unix seconds) and fill or drop the others")
    return seconds.reindex(values.index)


def _numbers(table: pd.DataFrame, column: str, option: str, source: str, allow_empty: bool) -> pd.Series:
    values = table[column].str.strip()
    numbers = pd.to_numeric(values.replace("", np.nan), errors="coerce")
    bad = numbers.isna() & ((values != "") | (not allow_empty))
    if bad.any():
        raise ConversionError(
            f"{source}: column {column!r} (--{option}) has {int(bad.sum())} value(s) that are no number, "
            f"e.g. {values[bad].iloc[0]!r}: write plain numbers such as 1299.5 (no currency sign or thousands separator)")
    return numbers


def _format_seconds(value: float) -> str:
    if np.isnan(value):
        return ""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _item_fields(products: pd.DataFrame, columns: TableColumns, source: str) -> tuple[pd.DataFrame, list[str]]:
    """The product table as ``.item`` fields (values as written), indexed by product id, and its header."""
    key = columns.item_key or columns.item
    wanted = {key: "item-key" if columns.item_key else "item"}
    for option in ("text", "category", "numeric"):
        wanted.update({column: option for column in getattr(columns, option)})
    if columns.launch:
        wanted[columns.launch] = "launch"
    _require_columns(products, wanted, source)

    ids = _ids(products, key, wanted[key], source)
    repeated = ids.duplicated()
    if repeated.any():
        raise ConversionError(
            f"{source}: column {key!r} ({'--item-key' if columns.item_key else '--item'}) lists {int(repeated.sum())} "
            f"product(s) more than once, e.g. {ids[repeated].iloc[0]!r}: keep one row per product")
    fields = {"item_id": ids}
    header = ["item_id:token"]
    names = {"item_id": key}

    def add(column: str, values: pd.Series, kind: str) -> None:
        name = LAUNCH_FIELD if kind == "launch" else field_name(column)
        if not name or name in names or (kind != "launch" and name in RESERVED_FIELDS):
            clash = f"the field of column {names[name]!r}" if name in names else "a reserved field"
            raise ConversionError(
                f"{source}: column {column!r} (--{kind}) would be the field {name!r}, {clash}; rename the column")
        names[name] = column
        fields[name] = values
        field_type = {"text": "token_seq", "numeric": "float", "launch": "float"}.get(kind, "token")
        if kind == "category" and columns.category_separator:
            field_type = "token_seq"
        header.append(f"{name}:{field_type}")

    for column in columns.text:
        add(column, products[column].map(title_words), "text")
    for column in columns.category:
        values = safe_text(products[column])
        if columns.category_separator:
            values = values.map(lambda value: " ".join(
                "_".join(part.split()) for part in value.split(columns.category_separator) if part.strip()))
        add(column, values, "category")
    for column in columns.numeric:
        numbers = _numbers(products, column, "numeric", source, allow_empty=True)
        add(column, numbers.map(lambda value: "" if np.isnan(value) else format_number(value)), "numeric")
    if columns.launch:
        seconds = _seconds(products, columns.launch, "launch", source, allow_empty=True)
        add(columns.launch, seconds.map(_format_seconds), "launch")
    table = pd.DataFrame(fields)
    table.index = ids.to_numpy()
    return table, header


def convert_tables(orders: pd.DataFrame, columns: TableColumns, products: pd.DataFrame | None = None,
                   orders_source: str = "orders", products_source: str = "products") -> TableConversion:
    """Apply the rules to the orders (and product) tables, as text (as :func:`read_table` returns them)."""
    if products is None and columns.product_options():
        raise ConversionError(f"{', '.join(columns.product_options())} describe the product table: pass it with --items")
    wanted = {columns.user: "user", columns.item: "item"}
    wanted.update({column: option for option, column in (("time", columns.time), ("quantity", columns.quantity)) if column})
    _require_columns(orders, wanted, orders_source)

    table = pd.DataFrame({"user_id": _ids(orders, columns.user, "user", orders_source),
                          "item_id": _ids(orders, columns.item, "item", orders_source)})
    header = ["user_id:token", "item_id:token"]
    if columns.time:
        table["timestamp"] = _seconds(orders, columns.time, "time", orders_source, allow_empty=False)
        header.append("timestamp:float")
    found = {}
    if columns.quantity:
        table["quantity"] = _numbers(orders, columns.quantity, "quantity", orders_source, allow_empty=False)
        header.append("quantity:float")
        returns = table["quantity"] <= 0
        found["returns"] = int(returns.sum())
        table = table[~returns]

    item = item_header = None
    if products is not None:
        item, item_header = _item_fields(products, columns, products_source)
        unlisted = ~table["item_id"].isin(item.index)
        found["unlisted"] = int(unlisted.sum())
        if not columns.keep_unlisted:
            table = table[~unlisted]

    if columns.time:
        table = table.sort_values("timestamp", kind="stable")
    repeats = table.duplicated(["user_id", "item_id"])
    found["repeats"] = int(repeats.sum())
    if not columns.keep_repeats:
        if columns.quantity:
            table = table.assign(quantity=table.groupby(["user_id", "item_id"], sort=False)["quantity"].transform("sum"))
        table = table[~repeats]
    if table.empty:
        raise ConversionError(
            f"{orders_source}: no row is left ({found.get('returns', 0)} with quantity <= 0, {found.get('unlisted', 0)} "
            "of products the product table does not list); check --quantity, --item and --item-key")

    inter = table.reset_index(drop=True)
    if columns.time:
        inter["timestamp"] = inter["timestamp"].map(_format_seconds)
    if columns.quantity:
        inter["quantity"] = inter["quantity"].map(format_number)
    products_without_orders = 0
    if item is not None:
        ordered = item.index.isin(inter["item_id"])
        products_without_orders = int((~ordered).sum())
        item = item[ordered].sort_values("item_id", kind="stable").reset_index(drop=True)
    return TableConversion(inter=inter, inter_header=header, item=item, item_header=item_header, columns=columns,
                           order_rows=len(orders), found=found, products_without_orders=products_without_orders)


def _check_name(name: str) -> None:
    if not name or name != Path(name).name or name.startswith("."):
        raise ConversionError(f"--name {name!r} is not a plain dataset name: use letters, digits, '_' or '-', such as shop")


def convert(interactions: str | os.PathLike, out: str | os.PathLike, name: str, columns: TableColumns,
            items: str | os.PathLike | None = None) -> TableConversion:
    """Read the tables, apply the rules and write ``out/name/name.inter`` (and ``.item``); a dataset folder
    converted earlier with a product table loses its ``.item`` when this one has none."""
    _check_name(name)
    orders = read_table(interactions, "interactions")
    products = read_table(items, "items") if items is not None else None
    conversion = convert_tables(orders, columns, products, str(interactions), str(items))
    with staged_folder(out, name) as staging:
        write_atomic(conversion.inter, conversion.inter_header, staging / f"{name}.inter")
        if conversion.item is not None:
            write_atomic(conversion.item, conversion.item_header, staging / f"{name}.item")
    if conversion.item is None:
        (Path(out) / name / f"{name}.item").unlink(missing_ok=True)
    return conversion
