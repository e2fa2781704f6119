"""The table converter (``recbole-fewshot convert table``): the rules, every refused input, RecBole reading
what it writes, CSV and Parquet alike, and the split of a dataset without timestamps or with launch dates."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from recbole_fewshot.cli import main
from recbole_fewshot.data.atomic import read_atomic, write_atomic
from recbole_fewshot.data.split import FewShotSplitError, SplitSpec, materialize, resolve_source
from recbole_fewshot.datasets import table as table_module
from recbole_fewshot.datasets.table import ConversionError, TableColumns, convert, convert_tables
from shop_sample import ORDERS, PRODUCTS, write_sample

SHOP = TableColumns(user="customer_id", item="sku", time="ordered_at", quantity="quantity",
                    text=("title", "description"), category=("category", "brand"), numeric=("price",),
                    launch="launch_date")
SHOP_ARGS = ["--interactions", str(ORDERS), "--user", "customer_id", "--item", "sku", "--time", "ordered_at",
             "--quantity", "quantity", "--items", str(PRODUCTS), "--text", "title,description",
             "--category", "category,brand", "--numeric", "price", "--launch", "launch_date"]


def read_csv(path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def orders_table(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["customer_id", "sku", "ordered_at", "quantity"])


def write_tables(folder, orders: pd.DataFrame, products: pd.DataFrame):
    folder.mkdir(parents=True, exist_ok=True)
    orders.to_csv(folder / "orders.csv", index=False)
    products.to_csv(folder / "products.csv", index=False)
    return folder / "orders.csv", folder / "products.csv"


def leftovers(out) -> list[str]:
    return sorted(str(p.relative_to(out)) for p in out.rglob("*")) if out.exists() else []


# --- the sample and the rules ----------------------------------------------------------------------

def test_sample_files_are_what_the_script_writes(tmp_path):
    orders, products = write_sample(tmp_path)
    assert orders.read_bytes() == ORDERS.read_bytes() and products.read_bytes() == PRODUCTS.read_bytes()


def test_sample_conversion_counts_and_files(tmp_path, capsys):
    assert main(["convert", "table", *SHOP_ARGS, "--name", "shop", "--out", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "shop: 918 order rows",
        "  dropped      30 rows with quantity <= 0 (returns)",
        "  dropped      10 rows whose product is not in the product table",
        "  merged      100 repeated (user, item) rows into the first purchase",
        "  wrote 778 interactions, 100 users, 58 items",
        "  product table: 58 ordered products written, 2 without orders left out",
        "  time range 2023-01-01 03:18 to 2023-06-30 23:59 UTC",
        f"wrote {tmp_path}/shop/shop.inter and .item",
    ]
    inter, inter_header = read_atomic(tmp_path / "shop" / "shop.inter")
    item, item_header = read_atomic(tmp_path / "shop" / "shop.item")
    assert inter_header == ["user_id:token", "item_id:token", "timestamp:float", "quantity:float"]
    assert item_header == ["item_id:token", "title:token_seq", "description:token_seq", "category:token",
                           "brand:token", "price:float", "launch_time:float"]
    assert sorted(p.name for p in (tmp_path / "shop").iterdir()) == ["shop.inter", "shop.item"]
    assert list(inter["timestamp"].astype(int)) == sorted(inter["timestamp"].astype(int))
    assert not inter.duplicated(["user_id", "item_id"]).any()
    assert list(item["item_id"]) == sorted(item["item_id"]) and set(item["item_id"]) == set(inter["item_id"])
    row = item.set_index("item_id").loc["SKU-1001"]
    assert (row["title"], row["category"], row["brand"], row["price"]) == ("vintage spice jar", "Kitchen", "Fjord & Co", "11.19")
    assert row["launch_time"] == str(int(pd.Timestamp("2023-01-04", tz="UTC").timestamp()))
    assert item.set_index("item_id").loc["SKU-1013", "launch_time"] == ""  # no launch date in the product table


def test_repeats_keep_the_first_purchase_by_time_with_summed_quantity():
    orders = orders_table([
        ("c1", "p1", "2023-03-05 10:00", "2"),
        ("c1", "p1", "2023-03-01 09:00", "1"),  # earlier, though listed later
        ("c1", "p1", "2023-03-09 10:00", "4"),
        ("c2", "p1", "2023-03-02 10:00", "1"),
    ])
    columns = TableColumns(user="customer_id", item="sku", time="ordered_at", quantity="quantity")
    merged = convert_tables(orders, columns)
    assert merged.found == {"returns": 0, "repeats": 2}
    assert merged.inter.values.tolist() == [
        ["c1", "p1", str(int(pd.Timestamp("2023-03-01 09:00", tz="UTC").timestamp())), "7"],
        ["c2", "p1", str(int(pd.Timestamp("2023-03-02 10:00", tz="UTC").timestamp())), "1"],
    ]
    kept = convert_tables(orders, replace(columns, keep_repeats=True))
    assert len(kept.inter) == 4 and kept.found["repeats"] == 2
    assert list(kept.inter["quantity"]) == ["1", "1", "2", "4"]  # by time, quantities as bought
    # without times, the first row is the first purchase
    untimed = convert_tables(orders, TableColumns(user="customer_id", item="sku"))
    assert untimed.inter.values.tolist() == [["c1", "p1"], ["c2", "p1"]]


def test_returns_and_zero_quantities_are_dropped_and_counted():
    orders = orders_table([
        ("c1", "p1", "2023-03-01", "1"),
        ("c1", "p2", "2023-03-02", "-1"),
        ("c2", "p2", "2023-03-03", "0"),
        ("c2", "p3", "2023-03-04", "-2.5"),
        ("c3", "p2", "2023-03-05", "0.5"),
    ])
    result = convert_tables(orders, TableColumns(user="customer_id", item="sku", time="ordered_at", quantity="quantity"))
    assert result.found["returns"] == 3
    assert result.inter[["user_id", "item_id", "quantity"]].values.tolist() == [["c1", "p1", "1"], ["c3", "p2", "0.5"]]


def test_unlisted_products_are_dropped_or_kept():
    orders = orders_table([("c1", "p1", "2023-03-01", "1"), ("c1", "gift", "2023-03-02", "1"), ("c2", "p1", "2023-03-03", "1")])
    products = pd.DataFrame({"sku": ["p1", "p9"], "title": ["Red Mug", "Blue Pot"]})
    columns = TableColumns(user="customer_id", item="sku", time="ordered_at", text=("title",))
    dropped = convert_tables(orders, columns, products)
    assert dropped.found["unlisted"] == 1 and set(dropped.inter["item_id"]) == {"p1"}
    assert dropped.item.values.tolist() == [["p1", "red mug"]] and dropped.products_without_orders == 1
    kept = convert_tables(orders, replace(columns, keep_unlisted=True), products)
    assert kept.found["unlisted"] == 1 and set(kept.inter["item_id"]) == {"p1", "gift"}
    assert list(kept.item["item_id"]) == ["p1"]


def test_product_table_under_another_id_column_and_category_lists():
    orders = orders_table([("c1", "p1", "2023-03-01", "1"), ("c2", "p2", "2023-03-02", "1")])
    products = pd.DataFrame({"id": ["p1", "p2"], "Product Type": ["Kitchen|Mugs & Cups", "Garden"]})
    columns = TableColumns(user="customer_id", item="sku", item_key="id", category=("Product Type",),
                           category_separator="|")
    result = convert_tables(orders, columns, products)
    assert result.item_header == ["item_id:token", "product_type:token_seq"]
    assert result.item.values.tolist() == [["p1", "Kitchen Mugs_&_Cups"], ["p2", "Garden"]]


# --- refused input: one line naming the file, the column and the fix --------------------------------

@pytest.mark.parametrize(("option", "column", "table"), [
    ("user", "customer_id", "orders"), ("item", "sku", "orders"), ("time", "ordered_at", "orders"),
    ("quantity", "quantity", "orders"), ("text", "description", "products"), ("category", "brand", "products"),
    ("numeric", "price", "products"), ("launch", "launch_date", "products"),
])
def test_missing_column_names_it_the_option_and_the_file(tmp_path, option, column, table):
    orders, products = read_csv(ORDERS), read_csv(PRODUCTS)
    if table == "orders":
        orders = orders.drop(columns=[column])
    else:
        products = products.drop(columns=[column])
    orders_file, products_file = write_tables(tmp_path / "in", orders, products)
    with pytest.raises(ConversionError) as caught:
        convert(orders_file, tmp_path / "out", "shop", SHOP, items=products_file)
    message = str(caught.value)
    assert "\n" not in message
    assert f"no column {column!r} (--{option})" in message and f"pass --{option} one of them" in message
    assert message.startswith(str(orders_file if table == "orders" else products_file))
    assert leftovers(tmp_path / "out") == []


def test_missing_product_id_column_names_item_key(tmp_path):
    columns = replace(SHOP, item_key="product_id")
    with pytest.raises(ConversionError, match=r"shop_products.csv: no column 'product_id' \(--item-key\)"):
        convert(ORDERS, tmp_path / "out", "shop", columns, items=PRODUCTS)


@pytest.mark.parametrize("table", ["orders", "products"])
def test_empty_table(tmp_path, table):
    orders, products = read_csv(ORDERS), read_csv(PRODUCTS)
    if table == "orders":
        orders = orders.iloc[:0]
    else:
        products = products.iloc[:0]
    orders_file, products_file = write_tables(tmp_path / "in", orders, products)
    with pytest.raises(ConversionError, match=f"{table}.csv: the table has no rows"):
        convert(orders_file, tmp_path / "out", "shop", SHOP, items=products_file)
    assert leftovers(tmp_path / "out") == []


def test_empty_file(tmp_path):
    (tmp_path / "orders.csv").write_text("")
    with pytest.raises(ConversionError, match=r"orders.csv: the file is empty \(--interactions\)"):
        convert(tmp_path / "orders.csv", tmp_path / "out", "shop", TableColumns(user="a", item="b"))


@pytest.mark.parametrize(("option", "column", "table"), [
    ("user", "customer_id", "orders"), ("item", "sku", "orders"), ("item", "sku", "products")])
def test_empty_ids_are_refused(tmp_path, option, column, table):
    orders, products = read_csv(ORDERS), read_csv(PRODUCTS)
    frame = orders if table == "orders" else products
    frame.loc[4, column] = ""
    frame.loc[9, column] = "  "
    orders_file, products_file = write_tables(tmp_path / "in", orders, products)
    with pytest.raises(ConversionError) as caught:
        convert(orders_file, tmp_path / "out", "shop", SHOP, items=products_file)
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'in' / (table + '.csv')}: column {column!r} (--{option}) is empty in 2 row(s)")
    assert "the first is data row 5" in message and "fill in the ids or drop those rows" in message


def error_with_one_bad_value(tmp_path: Path, in_products: bool, row: int, column: str, bad: str) -> str:
    """The conversion error of the sample with ``bad`` in ``column`` of one row (orders or products)."""
    orders, products = read_csv(ORDERS), read_csv(PRODUCTS)
    (products if in_products else orders).loc[row, column] = bad
    orders_file, products_file = write_tables(tmp_path / "in", orders, products)
    with pytest.raises(ConversionError) as caught:
        convert(orders_file, tmp_path / "out", "shop", SHOP, items=products_file)
    return str(caught.value)


@pytest.mark.parametrize(("column", "option", "bad"), [("ordered_at", "time", "yesterday"), ("ordered_at", "time", ""),
                                                       ("launch_date", "launch", "soon")])
def test_unreadable_times_are_refused(tmp_path, column, option, bad):
    message = error_with_one_bad_value(tmp_path, in_products=option == "launch", row=3, column=column, bad=bad)
    assert f"column {column!r} (--{option}) has 1 value(s) that are no date or unix time, e.g. {bad!r}" in message
    assert "2023-03-01 14:22" in message


def test_empty_launch_dates_are_allowed():
    orders = orders_table([("c1", "p1", "2023-03-01", "1")])
    products = pd.DataFrame({"sku": ["p1"], "launch_date": [""]})
    result = convert_tables(orders, TableColumns(user="customer_id", item="sku", launch="launch_date"), products)
    assert result.item.values.tolist() == [["p1", ""]]


@pytest.mark.parametrize(("column", "option", "bad"), [("price", "numeric", "$12.00"), ("price", "numeric", "1,299.00"),
                                                       ("quantity", "quantity", "two"), ("quantity", "quantity", "")])
def test_numbers_that_are_no_numbers_are_refused(tmp_path, column, option, bad):
    message = error_with_one_bad_value(tmp_path, in_products=option == "numeric", row=2, column=column, bad=bad)
    assert f"column {column!r} (--{option}) has 1 value(s) that are no number, e.g. {bad!r}" in message


def test_a_product_listed_twice_is_refused(tmp_path):
    products = read_csv(PRODUCTS)
    products.loc[5, "sku"] = products.loc[4, "sku"]
    orders_file, products_file = write_tables(tmp_path / "in", read_csv(ORDERS), products)
    message = r"column 'sku' \(--item\) lists 1 product\(s\) more than once, e.g. 'SKU-1005': keep one row per product"
    with pytest.raises(ConversionError, match=message):
        convert(orders_file, tmp_path / "out", "shop", SHOP, items=products_file)


def test_nothing_left_after_the_rules_is_refused(tmp_path):
    orders = orders_table([("c1", "p1", "2023-03-01", "-1"), ("c2", "p2", "2023-03-02", "1")])
    products = pd.DataFrame({"sku": ["p1"], "title": ["Mug"]})
    message = r"no row is left \(1 with quantity <= 0, 1 of products the product table does not list\)"
    with pytest.raises(ConversionError, match=message):
        convert_tables(orders, TableColumns(user="customer_id", item="sku", quantity="quantity", text=("title",)), products)


def test_clashing_field_names_are_refused():
    orders = orders_table([("c1", "p1", "2023-03-01", "1")])
    products = pd.DataFrame({"sku": ["p1"], "Title": ["a"], "title": ["b"]})
    message = r"column 'title' \(--text\) would be the field 'title', the field of column 'Title'"
    with pytest.raises(ConversionError, match=message):
        convert_tables(orders, TableColumns(user="customer_id", item="sku", text=("Title", "title")), products)


def test_product_options_need_a_product_table(tmp_path):
    with pytest.raises(ConversionError, match="--text, --launch describe the product table: pass it with --items"):
        convert(ORDERS, tmp_path / "out", "shop",
                TableColumns(user="customer_id", item="sku", text=("title",), launch="launch_date"))
    assert leftovers(tmp_path / "out") == []


@pytest.mark.parametrize("path", ["orders.xlsx", "missing.csv"])
def test_unreadable_files(tmp_path, path):
    (tmp_path / "orders.xlsx").write_text("x")
    with pytest.raises(ConversionError, match="unknown file type|no such file"):
        convert(tmp_path / path, tmp_path / "out", "shop", TableColumns(user="a", item="b"))


def test_command_line_errors_exit_2_on_one_line(tmp_path, capsys):
    def run(user: str, name: str) -> int:
        return main(["convert", "table", "--interactions", str(ORDERS), "--user", user, "--item", "sku",
                     "--name", name, "--out", str(tmp_path / "out")])

    assert run("customer", "shop") == 2
    err = capsys.readouterr().err
    assert err.startswith("recbole-fewshot convert: error: ") and err.count("\n") == 1 and "'customer' (--user)" in err
    assert run("customer_id", "../shop") == 2
    assert "--name '../shop' is not a plain dataset name" in capsys.readouterr().err
    assert leftovers(tmp_path / "out") == []
    assert run("customer_id", "shop") == 0
    assert (tmp_path / "out" / "shop" / "shop.inter").is_file()


# --- text, files, RecBole ----------------------------------------------------------------------------

def test_tabs_newlines_and_quotes_are_made_safe(tmp_path, in_tmp):
    orders = orders_table([("c1\t", "p1", "2023-03-01", "1"), ("c2", "p2", "2023-03-02", "1")])
    products = pd.DataFrame({
        "sku": ["p1", "p2"],
        "title": ["Mug\twith\ttabs", "Pot\r\nwith a \"quote\"\nand lines"],
        "category": ['"Best" sellers', "Home\tand\rgarden\nstuff"],
    })
    orders_file, products_file = write_tables(tmp_path / "in", orders, products)
    columns = TableColumns(user="customer_id", item="sku", time="ordered_at", text=("title",), category=("category",))
    convert(orders_file, tmp_path / "data", "safe", columns, items=products_file)
    lines = (tmp_path / "data" / "safe" / "safe.item").read_text(encoding="utf-8").split("\n")
    assert lines == ["item_id:token\ttitle:token_seq\tcategory:token",
                     "p1\tmug with tabs\t'Best' sellers",
                     "p2\tpot with a quote and lines\tHome and garden stuff", ""]
    dataset = load_with_recbole(tmp_path / "data", "safe")
    assert {dataset.id2token("category", i) for i in range(1, dataset.num("category"))} == {
        "'Best' sellers", "Home and garden stuff"}
    assert set(dataset.id2token("user_id", range(1, dataset.user_num))) == {"c1", "c2"}


def load_with_recbole(data_path, name: str, **config):
    from recbole.config import Config
    from recbole.data import create_dataset

    config = Config(model="Pop", dataset=name, config_dict={
        "data_path": str(data_path), "load_col": None, "state": "ERROR", "show_progress": False, **config})
    return create_dataset(config)


def test_recbole_reads_the_converted_sample(tmp_path, in_tmp):
    conversion = convert(ORDERS, tmp_path / "data", "shop", SHOP, items=PRODUCTS)
    dataset = load_with_recbole(tmp_path / "data", "shop")
    assert (dataset.user_num - 1, dataset.item_num - 1, dataset.inter_num) == (100, 58, 778)
    assert set(dataset.id2token("user_id", range(1, dataset.user_num))) == set(conversion.inter["user_id"])
    assert set(dataset.id2token("item_id", range(1, dataset.item_num))) == set(conversion.item["item_id"])
    types = {name: dataset.field2type[name].value for name in dataset.item_feat.columns}
    assert types == {"item_id": "token", "title": "token_seq", "description": "token_seq", "category": "token",
                     "brand": "token", "price": "float", "launch_time": "float"}
    assert dataset.field2type["timestamp"].value == "float" and dataset.field2type["quantity"].value == "float"
    words = {dataset.id2token("title", i) for i in range(1, dataset.num("title"))}
    assert {"vintage", "spice", "jar", "watering", "can"} <= words
    assert {dataset.id2token("brand", i) for i in range(1, dataset.num("brand"))} == {"Acme", "Northwind", "Fjord & Co", "Lumen"}
    item = dataset.token2id("item_id", "SKU-1001")
    assert float(dataset.item_feat["price"][item]) == pytest.approx(11.19)


def test_parquet_and_csv_give_the_same_files(tmp_path):
    pytest.importorskip("pyarrow")
    orders, products = read_csv(ORDERS), read_csv(PRODUCTS)
    typed_orders = orders.assign(ordered_at=pd.to_datetime(orders["ordered_at"]),
                                 quantity=orders["quantity"].astype(int))
    typed_products = products.assign(price=products["price"].astype(float),
                                     launch_date=pd.to_datetime(products["launch_date"].replace("", None)))
    typed_orders.to_parquet(tmp_path / "orders.parquet")
    typed_products.to_parquet(tmp_path / "products.parquet")
    convert(ORDERS, tmp_path / "csv", "shop", SHOP, items=PRODUCTS)
    convert(tmp_path / "orders.parquet", tmp_path / "parquet", "shop", SHOP, items=tmp_path / "products.parquet")
    for suffix in ("inter", "item"):
        assert (tmp_path / "csv" / "shop" / f"shop.{suffix}").read_bytes() == \
            (tmp_path / "parquet" / "shop" / f"shop.{suffix}").read_bytes()


def test_numeric_ids_and_unix_times_in_parquet(tmp_path):
    pytest.importorskip("pyarrow")
    frame = pd.DataFrame({"user": [17850, 13047], "item": [22423.0, 85123.0], "t": [1291191960, 1291191961.5]})
    frame.to_parquet(tmp_path / "orders.parquet")
    result = convert(tmp_path / "orders.parquet", tmp_path / "out", "ids", TableColumns(user="user", item="item", time="t"))
    assert result.inter.values.tolist() == [["17850", "22423", "1291191960"], ["13047", "85123", "1291191961.5"]]


def test_failed_write_keeps_the_previous_files(tmp_path, monkeypatch):
    convert(ORDERS, tmp_path, "shop", SHOP, items=PRODUCTS)
    folder = tmp_path / "shop"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    real_write = table_module.write_atomic

    def failing_write(table, header, path):
        if str(path).endswith(".item"):
            raise OSError("disk full")
        return real_write(table, header, path)

    monkeypatch.setattr(table_module, "write_atomic", failing_write)
    half = tmp_path / "half.csv"
    read_csv(ORDERS).iloc[:300].to_csv(half, index=False)
    with pytest.raises(OSError, match="disk full"):
        convert(half, tmp_path, "shop", SHOP, items=PRODUCTS)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # no new .inter, no staging folder


def test_a_conversion_without_products_drops_an_earlier_item_file(tmp_path):
    convert(ORDERS, tmp_path, "shop", SHOP, items=PRODUCTS)
    convert(ORDERS, tmp_path, "shop", TableColumns(user="customer_id", item="sku", time="ordered_at"))
    assert sorted(p.name for p in (tmp_path / "shop").iterdir()) == ["shop.inter"]


def test_online_retail_is_a_convert_source_too(tmp_path, capsys):
    from pathlib import Path

    sample = Path(__file__).parent / "data" / "online_retail_sample.csv"
    assert main(["convert", "online_retail", "--raw", str(sample), "--out", str(tmp_path)]) == 0
    assert "kept 13 interactions, 5 users, 8 items" in capsys.readouterr().out
    assert (tmp_path / "online_retail" / "online_retail.item").is_file()


# --- the split ---------------------------------------------------------------------------------------

def test_without_timestamps_the_split_falls_back_to_random(tmp_path, caplog):
    conversion = convert(ORDERS, tmp_path / "data", "notime", TableColumns(user="customer_id", item="sku"))
    assert conversion.inter_header == ["user_id:token", "item_id:token"]
    assert conversion.report_lines("notime")[-1] == \
        "  no timestamps: splits of this dataset choose new items at random (policy random)"
    source = resolve_source("notime", tmp_path / "data")
    with caplog.at_level("WARNING", logger="recbole_fewshot.data.split"):
        name, manifest = materialize(source, SplitSpec(shots=3), tmp_path / "splits")
    assert "notime: the interactions have no timestamps, so the split uses fewshot.policy: random" in caplog.text
    assert manifest["policy"] == "random" and name.startswith("notime-fewshot-k3-random-")
    assert materialize(source, SplitSpec(shots=3, policy="random"), tmp_path / "splits") == (name, manifest)


def test_launch_dates_order_the_new_items(tmp_path):
    """The product first sold earliest (of those with enough orders) is made the latest launch: with launch
    dates it becomes a test-new item, without them it stays warm."""
    orders = read_csv(ORDERS)
    kept = convert(ORDERS, tmp_path / "plain", "shop", SHOP, items=PRODUCTS).inter
    counts = kept["item_id"].value_counts()
    eligible = kept[kept["item_id"].isin(counts[counts >= 11].index)]
    oldest = eligible.assign(t=eligible["timestamp"].astype(int)).groupby("item_id")["t"].min().idxmin()
    products = read_csv(PRODUCTS)
    products.loc[products["sku"] == oldest, "launch_date"] = "2023-12-31"
    orders_file, products_file = write_tables(tmp_path / "in", orders, products)
    convert(orders_file, tmp_path / "launch", "shop", SHOP, items=products_file)
    without = replace(SHOP, launch=None)
    convert(orders_file, tmp_path / "nolaunch", "shop", without, items=products_file)

    def test_items(data_path) -> list[str]:
        _, manifest = materialize(resolve_source("shop", data_path), SplitSpec(shots=3), tmp_path / "splits" / data_path.name)
        return manifest["test_new_items"]

    assert oldest in test_items(tmp_path / "launch")
    assert oldest not in test_items(tmp_path / "nolaunch")
    assert test_items(tmp_path / "plain")  # the shipped sample splits as it is


def test_launch_times_that_are_no_numbers_stop_the_split(tmp_path):
    convert(ORDERS, tmp_path / "data", "shop", SHOP, items=PRODUCTS)
    item_file = tmp_path / "data" / "shop" / "shop.item"
    item, header = read_atomic(item_file)
    item.loc[3, "launch_time"] = "2023-01-05"
    write_atomic(item, header, item_file)
    with pytest.raises(FewShotSplitError, match=r"shop.item: launch_time holds 1 value\(s\) that are no number, e.g. '2023-01-05'"):
        materialize(resolve_source("shop", tmp_path / "data"), SplitSpec(shots=3), tmp_path / "splits")
    assert leftovers(tmp_path / "splits") == []


def test_from_two_csv_files_to_a_results_table(tmp_path, in_tmp, capsys):
    """The commands of docs/your-data.md on the sample: convert, then a tiny benchmark."""
    assert main(["convert", "table", *SHOP_ARGS, "--name", "shop", "--out", str(tmp_path / "dataset")]) == 0
    assert main(["benchmark", "--dataset", "shop", "--data-path", str(tmp_path / "dataset"), "--models", "Pop",
                 "ContentRidge", "--shots", "3", "--seeds", "1", "--out", str(tmp_path / "results"), "--epochs=1"]) == 0
    rows = pd.read_csv(tmp_path / "results" / "results.csv")
    assert list(rows["status"]) == ["ok", "ok"] and set(rows["model"]) == {"Pop", "ContentRidge"}
    assert "| ContentRidge |" in capsys.readouterr().out
