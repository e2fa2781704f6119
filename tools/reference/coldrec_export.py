"""This project's ml-100k few-shot split (K = 0) in ColdRec's on-disk format.

ColdRec reads ``data/<dataset>/cold_item/`` (``warm_train.csv``, ``warm_val.csv``, ``warm_test.csv``,
``cold_item_val.csv``, ``cold_item_test.csv``, ``cold_item.csv``: ``user,item`` rows with 0-based
indices; ``n_user_item.pkl``) and ``data/<dataset>/<dataset>_item_content.npy`` (one content row per
item index); its own ``data/convert.py`` then writes ``overall_*.csv`` and ``info_dict.pkl``.

Indices: users and items in ascending order of their ids in the split's ``.user`` and ``.item`` files
(for ml-100k, index = MovieLens id - 1). The split's training interactions are ColdRec's warm
training set, its valid and test queries the cold validation and test sets; there is no warm
validation or test. A second dataset for choosing the backbone's epoch count holds out 10 % of the
training interactions as warm validation, by the rule of ColdRec's ``data/split.py``.

Item content, from the split's ``.item`` file (the fields this project's models read), as one multi-hot
vector per film: its genres (``class``), its release-year bucket (``release_year``) and the words of its
``movie_title`` that are on at least ``min_title_films`` films (lower case, articles left out).
"""

from __future__ import annotations

import json
import pickle
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

# Release years: everything before 1950 together, then decades, then single years from 1990 on
# (where four films in five were released); one more column marks an unknown year.
YEAR_BUCKETS = [("year_<1950", 0, 1949), ("year_1950s", 1950, 1959), ("year_1960s", 1960, 1969),
                ("year_1970s", 1970, 1979), ("year_1980s", 1980, 1989)] + [(f"year_{y}", y, y) for y in range(1990, 1999)]
UNKNOWN_YEAR = "year_unknown"
ARTICLES = {"the", "a", "an"}
HOLDOUT_SHARE = 0.1
HOLDOUT_SEED = 42  # ColdRec data/split.py's default seed


@dataclass(frozen=True)
class Split:
    """A materialised split: its name, manifest, interactions (as ColdRec indices) and item table."""

    name: str
    manifest: dict
    train: pd.DataFrame  # columns user, item (ColdRec indices), timestamp
    valid: pd.DataFrame
    test: pd.DataFrame
    items: pd.DataFrame  # the .item file, column names without their types, in index order
    n_users: int
    valid_new_items: np.ndarray  # ColdRec indices
    test_new_items: np.ndarray


def _read_atomic(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    frame.columns = [c.split(":")[0] for c in frame.columns]
    return frame


def read_split(split_dir: Path) -> Split:
    """Reads a split written by ``recbole-fewshot split`` (one split per folder)."""
    manifests = list(split_dir.glob("*.fewshot.json"))
    if len(manifests) != 1:
        raise FileNotFoundError(f"expected one *.fewshot.json in {split_dir}, found {len(manifests)}")
    manifest = json.loads(manifests[0].read_text(encoding="utf-8"))
    name = manifest["name"]
    items = _read_atomic(split_dir / f"{name}.item")
    users = _read_atomic(split_dir / f"{name}.user")
    item_index = {token: i for i, token in enumerate(sorted(items["item_id"], key=int))}
    user_index = {token: u for u, token in enumerate(sorted(users["user_id"], key=int))}

    def interactions(part: str) -> pd.DataFrame:
        frame = _read_atomic(split_dir / f"{name}.{part}.inter")
        frame = pd.DataFrame({"user": frame["user_id"].map(user_index), "item": frame["item_id"].map(item_index),
                              "timestamp": frame["timestamp"].astype(float)})
        if frame.isna().any().any():
            raise ValueError(f"{part}: an interaction's user or item is not in the split's .user/.item file")
        return frame.astype({"user": "int64", "item": "int64"}).sort_values(["timestamp", "user", "item"])

    items = items.assign(index=items["item_id"].map(item_index)).sort_values("index").reset_index(drop=True)
    return Split(name, manifest, interactions("train"), interactions("valid"), interactions("test"), items,
                 len(user_index), np.array([item_index[t] for t in manifest["valid_new_items"]]),
                 np.array([item_index[t] for t in manifest["test_new_items"]]))


def item_content(items: pd.DataFrame, min_title_films: int) -> tuple[np.ndarray, list[str]]:
    """The multi-hot content matrix (one row per item, in index order) and its column names."""
    genres = items["class"].str.split()
    years = pd.to_numeric(items["release_year"], errors="coerce")
    words = items["movie_title"].map(lambda title: set(re.findall(r"[a-z0-9']+", title.lower())) - ARTICLES)
    films_per_word = pd.Series([w for ws in words for w in ws]).value_counts()
    vocabulary = sorted(films_per_word.index[films_per_word >= min_title_films])
    genre_names = sorted({g for gs in genres for g in gs})
    columns = ([f"genre_{g}" for g in genre_names] + [label for label, _, _ in YEAR_BUCKETS] + [UNKNOWN_YEAR]
               + [f"title_{w}" for w in vocabulary])
    column = {name: c for c, name in enumerate(columns)}
    content = np.zeros((len(items), len(columns)), dtype=np.float32)
    for row, (film_genres, year, film_words) in enumerate(zip(genres, years, words)):
        for genre in film_genres:
            content[row, column[f"genre_{genre}"]] = 1.0
        for label, first, last in YEAR_BUCKETS:
            if first <= year <= last:
                content[row, column[label]] = 1.0
        if np.isnan(year):
            content[row, column[UNKNOWN_YEAR]] = 1.0
        for word in film_words & set(vocabulary):
            content[row, column[f"title_{word}"]] = 1.0
    return content, columns


def warm_holdout(train: pd.DataFrame, share: float = HOLDOUT_SHARE, seed: int = HOLDOUT_SEED
                 ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``train`` split into (training, warm validation) by ColdRec data/split.py's rule: a random
    ``share`` of the interactions validates, except those whose user, then item, is left with no
    training interaction (they go back to training)."""
    order = np.arange(len(train))
    np.random.RandomState(seed).shuffle(order)
    n_valid = int(share * len(order))
    fit, held = train.iloc[order[n_valid:]], train.iloc[order[:n_valid]]
    for key in ["user", "item"]:
        back = ~held[key].isin(set(fit[key]))
        fit, held = pd.concat([fit, held[back]]), held[~back]
    return fit, held


def write_dataset(coldrec: Path, dataset: str, split: Split, train: pd.DataFrame, warm_valid: pd.DataFrame,
                  content: np.ndarray, log: Path) -> dict:
    """Writes ``dataset`` into the ColdRec working copy ``coldrec`` and runs ColdRec's data/convert.py;
    returns ColdRec's info_dict, checked against the split's new items."""
    folder = coldrec / "data" / dataset / "cold_item"
    folder.mkdir(parents=True, exist_ok=True)
    pairs = ["user", "item"]
    no_rows = pd.DataFrame({"user": [], "item": []}, dtype="int64")
    train[pairs].to_csv(folder / "warm_train.csv", index=False)
    warm_valid[pairs].to_csv(folder / "warm_val.csv", index=False)
    no_rows.to_csv(folder / "warm_test.csv", index=False)
    split.valid[pairs].to_csv(folder / "cold_item_val.csv", index=False)
    split.test[pairs].to_csv(folder / "cold_item_test.csv", index=False)
    pd.concat([split.valid, split.test])[pairs].to_csv(folder / "cold_item.csv", index=False)
    with open(folder / "n_user_item.pkl", "wb") as handle:
        pickle.dump({"user": split.n_users, "item": len(split.items)}, handle)
    np.save(coldrec / "data" / dataset / f"{dataset}_item_content.npy", content)
    with open(log, "w", encoding="utf-8") as out:
        subprocess.run([sys.executable, "convert.py", "--dataset", dataset, "--cold_object", "item"],
                       cwd=coldrec / "data", check=True, stdout=out, stderr=subprocess.STDOUT)
    with open(folder / "info_dict.pkl", "rb") as handle:
        info = pickle.load(handle)
    new_items = set(split.valid_new_items) | set(split.test_new_items)
    if set(info["cold_item"].tolist()) != new_items or new_items & set(info["warm_item"].tolist()):
        raise ValueError(f"{dataset}: ColdRec's cold/warm item sets do not match the split's new items")
    return info
