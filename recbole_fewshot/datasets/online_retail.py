"""UCI Online Retail to RecBole atomic files.

The UCI "Online Retail" data set (Chen, Sain and Guo, 2012; CC BY 4.0) lists every invoice line of a UK
online gift shop from 2010-12-01 to 2011-12-09: 541,909 rows with the columns ``InvoiceNo, StockCode,
Description, Quantity, InvoiceDate, UnitPrice, CustomerID, Country``. UCI distributes it as an
``.xlsx`` sheet; a ``.csv`` or ``.csv.gz`` of the same rows reads the same.

Written files, under ``OUT/online_retail/``:

* ``online_retail.inter``: ``user_id:token`` (CustomerID), ``item_id:token`` (StockCode),
  ``timestamp:float`` (InvoiceDate in unix seconds; the sheet's wall-clock times, UK local time, are
  read as UTC; ISO dates, or month-first ``12/1/2010 8:26`` as in some CSV copies) and ``quantity:float``; one row per invoice line, ordered by time, invoice, item;
* ``online_retail.item``: ``item_id:token``, ``title:token_seq`` (the product description's words,
  lowercased, apostrophes dropped and every other character that is not a letter or digit turned into
  a space, since RecBole splits ``token_seq`` on spaces) and ``price:float`` (the median unit price of
  the product's kept invoice lines). Only products that occur in ``.inter`` are listed.

Cleaning rules, applied in this order; the converter prints how many rows each one removed:

1. **guest rows**: no CustomerID (a quarter of the rows are guest check-outs, which have no user to
   recommend to). CustomerIDs printed as floats (``17850.0``) become ``17850``.
2. **cancellations**: InvoiceNo starting with ``C``; they undo an earlier sale, not a purchase.
3. **non-positive quantity**: returns and stock adjustments (``Quantity <= 0``).
4. **non-positive price**: free samples, write-offs and manual fixes (``UnitPrice <= 0``).
5. **non-product stock codes**: StockCodes are first upper-cased, because the sheet spells some
   variants in lower case (``85123a`` is ``85123A``: 107 of the 111 lower-case codes carry the same
   description as their upper-case twin). A product code is five digits, optionally followed by one or
   two letters for a colour or size variant (``22423``, ``85123A``, ``15056BL``); every other code is
   removed. The rule is a pattern rather than a list because the non-product codes are open-ended:
   postage and fees (``POST``, ``DOT``, ``C2``, ``AMAZONFEE``, ``BANK CHARGES``, ``CRUK``), money
   adjustments (``D`` discount, ``M``/``m`` manual, ``B`` bad debt, ``S`` samples), gift vouchers
   (``gift_0001_*``), ``PADS`` and the ``DCGS*`` web-shop codes (all of which are guest rows anyway).
6. **duplicate invoice lines**: one invoice that lists one stock code on several lines becomes one
   interaction; quantities are summed and the line takes the invoice's earliest time.
7. **same user, item and time**: a customer who bought one product on two invoices stamped with the
   same minute (an order sent twice) gets one interaction with the summed quantity, so
   ``(user_id, item_id, timestamp)`` is a key of ``.inter``: one interaction per purchase line.

Then one description per stock code: the most frequent description on its kept lines (before rule 6
merges them), ties broken by the alphabetically first, so the same input always gives the same title.

Run it as ``recbole-fewshot convert online_retail --raw FILE --out DIR`` (or ``python -m
recbole_fewshot.datasets online_retail ...``). Both files are built in memory, written to a staging
folder next to the target and renamed into place, so an error never leaves a half-written dataset
behind. Titles, numbers, times and the staged writing are those of the general table converter
(:mod:`recbole_fewshot.datasets.table`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from recbole_fewshot.data.atomic import write_atomic
from recbole_fewshot.datasets.table import ConversionError, format_number, staged_folder, title_words, unix_seconds

NAME = "online_retail"
COLUMNS = ("InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID", "Country")
INTER_HEADER = ["user_id:token", "item_id:token", "timestamp:float", "quantity:float"]
ITEM_HEADER = ["item_id:token", "title:token_seq", "price:float"]
PRODUCT_CODE = re.compile(r"^\d{5}[A-Z]{0,2}$")
SUFFIXES = (".csv", ".csv.gz", ".xlsx")

# (key, what is printed) in the order the rules run.
RULES = (
    ("guest", "guest rows (no CustomerID)"),
    ("cancellation", "cancellations (InvoiceNo starting with C)"),
    ("quantity", "non-positive quantity"),
    ("price", "non-positive unit price"),
    ("non_product", "non-product stock codes"),
    ("duplicate_line", "duplicate lines of one invoice (merged)"),
    ("same_minute", "same user, item and time on another invoice (merged)"),
)


class OnlineRetailError(ConversionError):
    """Unusable input: the message names the file and what is wrong with it."""


@dataclass
class Conversion:
    """The converted tables (values as written) and what each cleaning rule removed."""

    inter: pd.DataFrame
    item: pd.DataFrame
    raw_rows: int
    removed: dict[str, int] = field(default_factory=dict)
    #: index labels of the raw rows each rule removed (for a merge: the rows merged into another one)
    removed_rows: dict[str, list] = field(default_factory=dict)

    def report_lines(self) -> list[str]:
        lines = [f"{NAME}: {self.raw_rows} raw rows"]
        for key, label in RULES:
            lines.append(f"  removed {self.removed[key]:>7} {label}")
        lines.append(
            f"  kept {len(self.inter)} interactions, {self.inter['user_id'].nunique()} users, "
            f"{len(self.item)} items"
        )
        return lines


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for suffix in sorted(SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return suffix
    raise OnlineRetailError(
        f"{path}: unknown file type; the converter reads UCI's .xlsx sheet or a .csv / .csv.gz of the same rows"
    )


def read_raw(path: str | os.PathLike) -> pd.DataFrame:
    """Read the raw rows as strings (empty string for a missing value), checking the columns."""
    path = Path(path)
    if not path.is_file():
        raise OnlineRetailError(f"{path}: no such file (pass --raw the Online Retail .xlsx, .csv or .csv.gz)")
    suffix = _suffix(path)
    if suffix == ".xlsx":
        try:
            import openpyxl  # noqa: F401
        except ImportError as error:
            raise OnlineRetailError(
                f"{path}: reading .xlsx needs openpyxl, which is not installed: `pip install openpyxl`, "
                "or convert the sheet to .csv first"
            ) from error
        table = pd.read_excel(path, dtype=str, engine="openpyxl", keep_default_na=False)
    else:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    missing = [column for column in COLUMNS if column not in table.columns]
    if missing:
        raise OnlineRetailError(
            f"{path}: missing column(s) {missing}; found {list(table.columns)}. "
            f"The Online Retail columns are {list(COLUMNS)}"
        )
    return table[list(COLUMNS)].fillna("").astype(str).apply(lambda column: column.str.strip())


def normalize_customer(values: pd.Series) -> pd.Series:
    """``17850.0`` -> ``17850`` (the sheet stores CustomerID as a float); other ids are kept as they are."""
    return values.str.replace(r"^(\d+)\.0*$", r"\1", regex=True)


def _numbers(table: pd.DataFrame, column: str, path_hint: str) -> pd.Series:
    values = pd.to_numeric(table[column], errors="coerce")
    bad = values.isna()
    if bad.any():
        first = table.loc[bad, column].iloc[0]
        raise OnlineRetailError(f"{path_hint}: {int(bad.sum())} row(s) with a non-numeric {column}, e.g. {first!r}")
    return values


def convert_table(raw: pd.DataFrame, source: str = "input") -> Conversion:
    """Apply the cleaning rules to the raw rows (strings, as :func:`read_raw` returns them)."""
    removed_rows: dict[str, list] = {}
    table = raw.assign(_row=raw.index)

    def drop(key: str, mask: pd.Series) -> None:
        nonlocal table
        removed_rows[key] = table.loc[mask, "_row"].tolist()
        table = table[~mask]

    drop("guest", table["CustomerID"] == "")
    table["CustomerID"] = normalize_customer(table["CustomerID"])
    drop("cancellation", table["InvoiceNo"].str.upper().str.startswith("C"))
    table = table.assign(_quantity=_numbers(table, "Quantity", source))
    drop("quantity", table["_quantity"] <= 0)
    table = table.assign(_price=_numbers(table, "UnitPrice", source))
    drop("price", table["_price"] <= 0)
    table = table.assign(StockCode=table["StockCode"].str.upper())
    drop("non_product", ~table["StockCode"].str.match(PRODUCT_CODE))

    # ISO dates (UCI's sheet, this CSV), otherwise the format pandas infers (``12/1/2010 8:26``, month first)
    seconds = unix_seconds(table["InvoiceDate"])
    if seconds.isna().any():
        first = table.loc[seconds.isna(), "InvoiceDate"].iloc[0]
        raise OnlineRetailError(f"{source}: {int(seconds.isna().sum())} row(s) with an unreadable InvoiceDate, e.g. {first!r}")
    table = table.assign(_time=seconds.astype(np.int64))

    # Item table from the kept lines: the most frequent description (ties: alphabetically first), median price.
    described = table[table["Description"] != ""]
    counts = described.groupby(["StockCode", "Description"]).size().rename("n").reset_index()
    counts = counts.sort_values(["StockCode", "n", "Description"], ascending=[True, False, True], kind="stable")
    description = counts.drop_duplicates("StockCode").set_index("StockCode")["Description"]
    price = table.groupby("StockCode")["_price"].median()
    items = pd.DataFrame({"item_id": price.index})
    items["title"] = items["item_id"].map(description).fillna("").map(title_words)
    items["price"] = price.to_numpy()
    items["price"] = items["price"].map(format_number)

    # One row per invoice line: duplicate lines of an invoice merge (summed quantity, earliest time).
    removed_rows["duplicate_line"] = table.loc[table.duplicated(["InvoiceNo", "StockCode"]), "_row"].tolist()
    lines = table.groupby(["InvoiceNo", "StockCode"], sort=False).agg(
        user_id=("CustomerID", "first"), timestamp=("_time", "min"), quantity=("_quantity", "sum"),
        _row=("_row", "first"),
    ).reset_index()
    # Same user, item and time on several invoices: the smallest invoice number stays.
    lines = lines.sort_values("InvoiceNo", kind="stable")
    key = ["user_id", "StockCode", "timestamp"]
    removed_rows["same_minute"] = lines.loc[lines.duplicated(key), "_row"].tolist()
    merged = lines.groupby(key, sort=False).agg(
        InvoiceNo=("InvoiceNo", "first"), quantity=("quantity", "sum"),
    ).reset_index()
    lines = merged.sort_values(["timestamp", "InvoiceNo", "StockCode"], kind="stable")
    inter = pd.DataFrame({
        "user_id": lines["user_id"].to_numpy(),
        "item_id": lines["StockCode"].to_numpy(),
        "timestamp": lines["timestamp"].astype(np.int64).astype(str).to_numpy(),
        "quantity": lines["quantity"].map(format_number).to_numpy(),
    })
    removed = {key: len(removed_rows[key]) for key, _ in RULES}
    return Conversion(inter=inter, item=items.reset_index(drop=True), raw_rows=len(raw), removed=removed,
                      removed_rows=removed_rows)


def write_dataset(conversion: Conversion, out: str | os.PathLike, name: str = NAME) -> Path:
    """Write ``out/name/name.inter`` and ``.item``; both are staged, then renamed into place."""
    with staged_folder(out, name) as staging:
        write_atomic(conversion.inter, INTER_HEADER, staging / f"{name}.inter")
        write_atomic(conversion.item, ITEM_HEADER, staging / f"{name}.item")
    return Path(out) / name


def convert(raw: str | os.PathLike, out: str | os.PathLike, name: str = NAME) -> Conversion:
    """Read the raw file, clean it and write the atomic files; return the conversion (with its counts)."""
    conversion = convert_table(read_raw(raw), source=str(raw))
    if conversion.inter.empty:
        raise OnlineRetailError(f"{raw}: no rows are left after cleaning; nothing written")
    write_dataset(conversion, out, name)
    return conversion
