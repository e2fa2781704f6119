"""A small made-up shop: ``tests/data/shop_orders.csv`` and ``tests/data/shop_products.csv``.

``python tests/shop_sample.py`` writes both files again (the same bytes: Python's own ``random`` and
``csv`` modules, one fixed seed). 60 products with a title, a description, a category, a brand, a price
and a launch date, 100 customers and 900 order rows of the first half of 2023, with what real exports
hold: returns (quantity -1) and zero quantities, repeated purchases, orders of products the product
table does not list, products nobody ordered, a product without a launch date, and descriptions with
commas, quotes, a tab and a line break.
"""

from __future__ import annotations

import csv
import random
from datetime import datetime, timedelta
from pathlib import Path

DATA = Path(__file__).parent / "data"
ORDERS = DATA / "shop_orders.csv"
PRODUCTS = DATA / "shop_products.csv"
SEED = 2023

ADJECTIVES = ["red", "blue", "green", "oak", "linen", "copper", "striped", "vintage", "mini", "large"]
NOUNS = {
    "Kitchen": ["mug", "teapot", "cutting board", "spice jar", "apron"],
    "Garden": ["watering can", "plant pot", "bird feeder", "trowel", "seed tray"],
    "Home Decor": ["cushion", "candle holder", "photo frame", "vase", "wall clock"],
    "Toys": ["yo-yo", "puzzle", "kite", "rag doll", "spinning top"],
}
BRANDS = ["Acme", "Northwind", "Fjord & Co", "Lumen"]
START = datetime(2023, 1, 1)
END = datetime(2023, 6, 30, 23, 59)


def products(rng: random.Random) -> list[dict[str, str]]:
    rows = []
    categories = list(NOUNS)
    for index in range(60):
        category = categories[index % len(categories)]
        noun = rng.choice(NOUNS[category])
        adjective = rng.choice(ADJECTIVES)
        launch = START + timedelta(days=int(150 * index / 60) + rng.randint(0, 4))
        rows.append({
            "sku": f"SKU-{1001 + index}",
            "title": f"{adjective.title()} {noun.title()}",
            "description": f"A {adjective} {noun} for the {category.lower()}, made by hand; ships in {rng.randint(1, 5)} days.",
            "category": category,
            "brand": rng.choice(BRANDS),
            "price": f"{rng.randint(300, 4500) / 100:.2f}",
            "launch_date": launch.strftime("%Y-%m-%d"),
        })
    rows[7]["description"] = 'The "classic" one,\twith a tab\nand a second line.'
    rows[12]["launch_date"] = ""
    return rows


def orders(rng: random.Random, catalogue: list[dict[str, str]]) -> list[dict[str, str]]:
    skus = [row["sku"] for row in catalogue]
    # popularity falls with the catalogue position after a shuffle; the last two products sell nothing
    weights = [1.0 / (1 + rank) ** 0.5 for rank in range(len(skus) - 2)]
    rng.shuffle(weights)
    weights += [0.0, 0.0]
    launches = {row["sku"]: datetime.strptime(row["launch_date"] or "2023-01-01", "%Y-%m-%d") for row in catalogue}
    rows = []
    for number in range(900):
        customer = f"C{rng.randint(1, 100):04d}"
        if number % 90 == 45:
            sku = rng.choice(["SKU-9001", "GIFT-CARD"])  # sold, but not in the product table
            when = START + timedelta(minutes=rng.randint(0, 170 * 24 * 60))
        else:
            sku = rng.choices(skus, weights)[0]
            when = launches[sku] + timedelta(minutes=int(rng.expovariate(1 / (25 * 24 * 60))))
        when = min(when, END)
        quantity = rng.choice(["1", "1", "1", "2", "3"])
        if number % 37 == 0:
            quantity = "-1"
        elif number % 151 == 0:
            quantity = "0"
        rows.append({"order_id": f"O{10000 + number}", "customer_id": customer, "sku": sku,
                     "ordered_at": when.strftime("%Y-%m-%d %H:%M:%S"), "quantity": quantity})
    for number in range(0, 900, 50):  # repeat purchases: the same customer buys the same product again later
        first = rows[number]
        again = datetime.strptime(first["ordered_at"], "%Y-%m-%d %H:%M:%S") + timedelta(days=3)
        rows.append({**first, "order_id": f"O{20000 + number}", "ordered_at": min(again, END).strftime("%Y-%m-%d %H:%M:%S"),
                     "quantity": "1"})
    return rows


def write_csv(rows: list[dict[str, str]], path: Path) -> None:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def write_sample(folder: Path = DATA) -> tuple[Path, Path]:
    """Write the orders and products files into ``folder``; return their paths."""
    rng = random.Random(SEED)
    catalogue = products(rng)
    folder.mkdir(parents=True, exist_ok=True)
    write_csv(orders(rng, catalogue), folder / ORDERS.name)
    write_csv(catalogue, folder / PRODUCTS.name)
    return folder / ORDERS.name, folder / PRODUCTS.name


if __name__ == "__main__":
    for path in write_sample():
        print(path)
