"""The Online Retail converter: every cleaning rule on a hand-made sample, errors, atomic writes, the real file.

``tests/data/online_retail_sample.csv`` has the raw columns plus ``Expect``, the rule that must remove
each row (``keep`` for rows that stay); the converter ignores extra columns.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from recbole_fewshot.data.atomic import read_atomic
from recbole_fewshot.datasets import __main__ as datasets_main
from recbole_fewshot.datasets import online_retail
from recbole_fewshot.datasets.online_retail import (
    RULES,
    OnlineRetailError,
    convert,
    convert_table,
    read_raw,
    title_words,
)

SAMPLE = Path(__file__).parent / "data" / "online_retail_sample.csv"
REAL = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "online_retail" / "online_retail.csv.gz"
RULE_KEYS = [key for key, _ in RULES]


@pytest.fixture(scope="module")
def expect() -> pd.Series:
    return pd.read_csv(SAMPLE, dtype=str, keep_default_na=False)["Expect"]


@pytest.fixture(scope="module")
def sample():
    return convert_table(read_raw(SAMPLE), source=str(SAMPLE))


def inter_rows(conversion) -> dict[tuple[str, str], list[tuple[int, float]]]:
    rows = {}
    for user, item, timestamp, quantity in conversion.inter.itertuples(index=False):
        rows.setdefault((user, item), []).append((int(timestamp), float(quantity)))
    return rows


# --- the rules ----------------------------------------------------------------------------------

def test_sample_has_every_quirk(expect):
    assert set(expect) == {"keep", *RULE_KEYS}
    raw = pd.read_csv(SAMPLE, dtype=str, keep_default_na=False)
    for code in ("POST", "D", "M", "C2", "DOT", "BANK CHARGES", "PADS", "CRUK", "AMAZONFEE", "B", "S", "m"):
        assert code in set(raw["StockCode"]), code
    assert raw["StockCode"].str.startswith("gift_").any()
    assert raw["CustomerID"].str.endswith(".0").any() and (raw["CustomerID"] == "").any()


@pytest.mark.parametrize("rule", RULE_KEYS)
def test_each_rule_removes_exactly_its_rows(sample, expect, rule):
    assert sorted(sample.removed_rows[rule]) == sorted(expect.index[expect == rule].tolist())
    assert sample.removed[rule] == int((expect == rule).sum())


def test_counts_add_up(sample, expect):
    assert sample.raw_rows == len(expect) == 43
    assert len(sample.inter) == sample.raw_rows - sum(sample.removed.values()) == int((expect == "keep").sum())


def test_users_items_and_float_customer_ids(sample):
    assert set(sample.inter["user_id"]) == {"17850", "13047", "12583", "12347", "12348"}
    # lower-case variant codes join their upper-case product; no non-product code survives
    assert set(sample.inter["item_id"]) == set(sample.item["item_id"]) == {
        "85123A", "71053", "22423", "22752", "84029G", "21730", "15056BL", "85099B"}
    assert not sample.inter.duplicated(["user_id", "item_id", "timestamp"]).any()


def test_merged_lines_sum_quantity_and_keep_the_earliest_time(sample):
    rows = inter_rows(sample)
    start = int(pd.Timestamp("2010-12-01 08:26:00", tz="UTC").timestamp())
    assert rows[("17850", "22423")] == [(start, 3.0)]  # 2 at 08:26 + 1 at 08:27 on one invoice
    assert rows[("13047", "85099B")] == [(int(pd.Timestamp("2010-12-05 12:00", tz="UTC").timestamp()), 20.0)]
    assert rows[("12583", "71053")] == [(int(pd.Timestamp("2010-12-06 09:00", tz="UTC").timestamp()), 3.0)]
    assert rows[("12583", "85123A")] == [(int(pd.Timestamp("2010-12-04 11:00", tz="UTC").timestamp()), 2.0)]
    assert rows[("13047", "22423")] == [(1291280400, 4.0), (1291374000, 1.0)]  # two invoices: two interactions
    assert list(sample.inter["timestamp"].astype(int)) == sorted(sample.inter["timestamp"].astype(int))


def test_one_description_per_code_and_median_price(sample):
    items = sample.item.set_index("item_id")
    # most frequent on kept lines (3x), not the guests' description (4x) nor the variants
    assert items.loc["22423", "title"] == "regency cakestand 3 tier"
    assert items.loc["85099B", "title"] == "jumbo bag red retrospot"  # 1:1 tie, alphabetically first
    assert items.loc["84029G", "title"] == "knitted union flag hot water bottle dolly girls"  # not the 0-price "?"
    assert items.loc["85123A", "title"] == "white hanging heart t light holder"
    assert float(items.loc["85123A", "price"]) == pytest.approx(2.75)  # median of 2.55 and 2.95
    assert float(items.loc["22423", "price"]) == pytest.approx(12.75)
    assert float(items.loc["85099B", "price"]) == pytest.approx(2.025)


def test_description_ties_do_not_depend_on_row_order(expect):
    raw = read_raw(SAMPLE)
    forward = convert_table(raw).item
    backward = convert_table(raw.iloc[::-1].reset_index(drop=True)).item
    pd.testing.assert_frame_equal(forward, backward)


def test_title_words():
    assert title_words("WHITE HANGING HEART T-LIGHT HOLDER") == "white hanging heart t light holder"
    assert title_words("  DOLLY GIRL'S  (SET/3), £2.50!") == "dolly girls set 3 2 50"
    assert title_words("?") == ""


# --- files, RecBole, command line ---------------------------------------------------------------

def test_written_files_load_in_recbole(tmp_path, monkeypatch):
    from recbole.config import Config
    from recbole.data import create_dataset

    conversion = convert(SAMPLE, tmp_path / "data")
    folder = tmp_path / "data" / "online_retail"
    inter, inter_header = read_atomic(folder / "online_retail.inter")
    item, item_header = read_atomic(folder / "online_retail.item")
    assert inter_header == ["user_id:token", "item_id:token", "timestamp:float", "quantity:float"]
    assert item_header == ["item_id:token", "title:token_seq", "price:float"]
    assert len(inter) == len(conversion.inter) == 13 and len(item) == 8
    assert sorted(p.name for p in folder.iterdir()) == ["online_retail.inter", "online_retail.item"]

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [sys.argv[0]])
    config = Config(model="Pop", dataset="online_retail", config_dict={
        "data_path": str(tmp_path / "data"), "load_col": None, "state": "ERROR", "show_progress": False})
    dataset = create_dataset(config)
    assert dataset.user_num == 5 + 1 and dataset.item_num == 8 + 1 and dataset.inter_num == 13
    assert dataset.field2type["title"].value == "token_seq" and dataset.field2type["price"].value == "float"
    words = {dataset.id2token("title", i) for i in range(1, dataset.num("title"))}
    assert {"regency", "cakestand", "retrospot", "dolly", "girls"} <= words


def test_errors_are_clear_and_write_nothing(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(OnlineRetailError, match="no such file"):
        convert(tmp_path / "missing.csv.gz", out)
    odd = tmp_path / "retail.txt"
    odd.write_text(SAMPLE.read_text())
    with pytest.raises(OnlineRetailError, match="unknown file type"):
        convert(odd, out)
    no_price = tmp_path / "no_price.csv"
    pd.read_csv(SAMPLE, dtype=str).drop(columns=["UnitPrice"]).to_csv(no_price, index=False)
    with pytest.raises(OnlineRetailError, match=r"missing column\(s\) \['UnitPrice'\]"):
        convert(no_price, out)
    bad_date = tmp_path / "bad_date.csv"
    pd.read_csv(SAMPLE, dtype=str).assign(InvoiceDate="not a date").to_csv(bad_date, index=False)
    with pytest.raises(OnlineRetailError, match="InvoiceDate"):
        convert(bad_date, out)
    assert not out.exists() or not any(out.rglob("*.inter"))


def test_xlsx_without_openpyxl_says_how_to_install(tmp_path, monkeypatch):
    import builtins

    sheet = tmp_path / "Online Retail.xlsx"
    sheet.write_bytes(b"PK not really a sheet")
    real_import = builtins.__import__

    def no_openpyxl(name, *args, **kwargs):
        if name == "openpyxl" or name.startswith("openpyxl."):
            raise ImportError("No module named 'openpyxl'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_openpyxl)
    with pytest.raises(OnlineRetailError, match="pip install openpyxl"):
        convert(sheet, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_xlsx_reads_like_the_csv(tmp_path):
    pytest.importorskip("openpyxl")
    raw = pd.read_csv(SAMPLE, keep_default_na=True)  # as in UCI's sheet: float CustomerID, datetime cells
    raw["InvoiceDate"] = pd.to_datetime(raw["InvoiceDate"])
    sheet = tmp_path / "Online Retail.xlsx"
    raw.drop(columns=["Expect"]).to_excel(sheet, index=False)
    from_sheet = convert(sheet, tmp_path / "xlsx")
    from_csv = convert_table(read_raw(SAMPLE))
    assert from_sheet.removed == from_csv.removed
    pd.testing.assert_frame_equal(from_sheet.inter, from_csv.inter)
    pd.testing.assert_frame_equal(from_sheet.item, from_csv.item)


def test_us_style_dates_read_like_iso(tmp_path):
    raw = pd.read_csv(SAMPLE, dtype=str, keep_default_na=False)
    raw["InvoiceDate"] = pd.to_datetime(raw["InvoiceDate"]).map(lambda t: f"{t.month}/{t.day}/{t.year} {t.hour}:{t.minute:02d}")
    us = tmp_path / "us.csv"
    raw.to_csv(us, index=False)
    pd.testing.assert_frame_equal(convert_table(read_raw(us)).inter, convert_table(read_raw(SAMPLE)).inter)


def test_failed_rewrite_keeps_the_previous_files(tmp_path, monkeypatch):
    convert(SAMPLE, tmp_path)
    folder = tmp_path / "online_retail"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    calls = []

    def failing_write(table, header, path):
        calls.append(path)
        if str(path).endswith(".item"):
            raise OSError("disk full")
        return real_write(table, header, path)

    real_write = online_retail.write_atomic
    monkeypatch.setattr(online_retail, "write_atomic", failing_write)
    half = pd.read_csv(SAMPLE, dtype=str, keep_default_na=False).iloc[:10]
    smaller = tmp_path / "smaller.csv"
    half.to_csv(smaller, index=False)
    with pytest.raises(OSError, match="disk full"):
        convert(smaller, tmp_path)
    assert len(calls) == 2
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # no new .inter, no staging folder


def test_command_line(tmp_path, capsys):
    assert datasets_main.main(["online_retail", "--raw", str(tmp_path / "nope.csv"), "--out", str(tmp_path)]) == 2
    assert "no such file" in capsys.readouterr().err
    result = subprocess.run(
        [sys.executable, "-m", "recbole_fewshot.datasets", "online_retail", "--raw", str(SAMPLE), "--out", str(tmp_path)],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "removed       6 guest rows (no CustomerID)" in result.stdout
    assert "removed      14 non-product stock codes" in result.stdout
    assert "kept 13 interactions, 5 users, 8 items" in result.stdout
    assert (tmp_path / "online_retail" / "online_retail.inter").is_file()


# --- the real file ------------------------------------------------------------------------------

@pytest.mark.skipif(not REAL.is_file(), reason=f"{REAL} is not here (the UCI file lives in ../shared)")
def test_real_file(tmp_path):
    from recbole_fewshot.data.split import SplitSpec, materialize, resolve_source

    conversion = convert(REAL, tmp_path)
    assert conversion.raw_rows == 541909
    assert conversion.removed == {"guest": 135080, "cancellation": 8905, "quantity": 0, "price": 40,
                                  "non_product": 1547, "duplicate_line": 10011, "same_minute": 81}
    inter = conversion.inter
    assert (len(inter), inter["user_id"].nunique(), len(conversion.item)) == (386245, 4334, 3659)
    assert inter["item_id"].str.fullmatch(r"\d{5}[A-Z]{0,2}").all()
    assert not inter["user_id"].str.contains(r"\.").any()
    launch = inter.assign(t=inter["timestamp"].astype(int)).groupby("item_id")["t"].min()
    assert 250 <= int((launch >= pd.Timestamp("2011-09-01", tz="UTC").timestamp()).sum()) <= 290
    assert (conversion.item["title"] != "").all()

    name, manifest = materialize(resolve_source("online_retail", tmp_path), SplitSpec(shots=3), tmp_path / "splits")
    stats = manifest["stats"]
    assert stats["valid_new_items"] > 200 and stats["test_new_items"] > 200
    # policy time: the test-new products are the latest launches, all after 2011-06
    test_launch = launch.loc[manifest["test_new_items"]]
    assert test_launch.min() >= pd.Timestamp("2011-06-01", tz="UTC").timestamp()
