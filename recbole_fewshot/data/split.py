"""The few-shot new-item split.

Protocol (see the README's "The split"):

* Items with at least ``max_shots + 1`` interactions are eligible, so the same new-item set serves
  every K. They are ordered by launch time (policy ``time``: the item's ``launch_time`` in the
  ``.item`` file where it has one, else its first interaction) or by a seeded shuffle (policy
  ``random``); the last ``new_item_ratio`` of them become new items. Interactions without
  timestamps (no ``TIME_FIELD``, or no ``timestamp`` field when ``TIME_FIELD`` is RecBole's default)
  are split with policy ``random``, with a logged warning; a ``TIME_FIELD`` named otherwise must exist.
* New items are divided into valid-new and test-new items (item-disjoint) by ``valid_share``:
  earlier launches validate, the latest launches test (``time``), or at random (``random``).
* Each new item keeps its K chronologically first interactions in training (its support set);
  all its other interactions are the queries of its phase. Warm items keep everything in training.
* Rows are written grouped by a seeded permutation of items, so the item ids RecBole assigns by
  first appearance carry nothing about query interactions.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from recbole_fewshot.data.atomic import FIELD_SEPARATOR, field_types, read_atomic, write_atomic

POLICIES = ("time", "random")
DEFAULT_TIME_FIELD = "timestamp"  # RecBole's TIME_FIELD default
LAUNCH_FIELD = "launch_time"  # an optional float field of the .item file: when the item was launched
MANIFEST_SUFFIX = "fewshot.json"
PHASES = ("train", "valid", "test")


class FewShotSplitError(ValueError):
    """Bad split parameters or input data; the message names the key and the fix."""


@dataclass(frozen=True)
class SplitSpec:
    """Parameters of a few-shot split (the ``fewshot:`` config block)."""

    shots: int
    policy: str = "time"
    new_item_ratio: float = 0.2
    valid_share: float = 0.5
    max_shots: int = 10
    seed: int = 2020

    def __post_init__(self) -> None:
        for key in ("shots", "max_shots", "seed"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise FewShotSplitError(f"fewshot.{key} must be an integer, got {value!r}")
        if self.shots < 0:
            raise FewShotSplitError(f"fewshot.shots must be >= 0 (0 is zero-shot), got {self.shots}")
        if self.shots > self.max_shots:
            raise FewShotSplitError(
                f"fewshot.shots={self.shots} exceeds fewshot.max_shots={self.max_shots}: "
                "raise max_shots or lower shots"
            )
        if self.policy not in POLICIES:
            raise FewShotSplitError(f"fewshot.policy must be one of {POLICIES}, got {self.policy!r}")
        for key in ("new_item_ratio", "valid_share"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
                raise FewShotSplitError(f"fewshot.{key} must be a number strictly between 0 and 1, got {value!r}")

    @classmethod
    def from_mapping(cls, mapping: Mapping) -> "SplitSpec":
        """Build from a config mapping, naming unknown keys."""
        if not isinstance(mapping, Mapping):
            raise FewShotSplitError(f"fewshot must be a mapping such as {{shots: 3}}, got {mapping!r}")
        mapping = dict(mapping)
        known = set(cls.__dataclass_fields__)
        unknown = set(mapping) - known
        if unknown:
            raise FewShotSplitError(f"unknown fewshot keys {sorted(unknown)}; known keys: {sorted(known)}")
        if "shots" not in mapping:
            raise FewShotSplitError("fewshot.shots is required (the number K of support interactions per new item)")
        return cls(**mapping)

    def without_timestamps(self, dataset: str, path: str) -> "SplitSpec":
        """The spec for interactions without timestamps: policy ``time`` has nothing to order by, so it
        becomes ``random``, with a warning logged once per source folder."""
        if self.policy != "time":
            return self
        _warn_no_timestamps(dataset, path)
        return replace(self, policy="random")

    def split_name(self, source: str, checksum: str) -> str:
        """The dataset name of the split: every parameter and the source's checksum are in it, so
        RecBole's caches keyed by dataset name (saved datasets, dataloaders) never mix two splits."""
        return (
            f"{source}-fewshot-k{self.shots}-{self.policy}-n{self.new_item_ratio:g}"
            f"-v{self.valid_share:g}-m{self.max_shots}-s{self.seed}-{checksum[:8]}"
        )


@dataclass
class FewShotSplit:
    """The three interaction tables of a split and the new items of each phase (raw tokens)."""

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    valid_new_items: list[str]
    test_new_items: list[str]
    stats: dict = field(default_factory=dict)


@functools.lru_cache(maxsize=None)
def _warn_no_timestamps(dataset: str, path: str) -> None:
    logging.getLogger(__name__).warning(
        f"{dataset}: the interactions have no timestamps, so the split uses fewshot.policy: random "
        "instead of time (new items chosen at random); give the interactions a TIME_FIELD to order them by launch")


def _rng(seed: int, purpose: str) -> np.random.Generator:
    """An independent generator per purpose, so one use of randomness never shifts another."""
    digest = hashlib.sha256(f"{seed}:{purpose}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def split_interactions(
    inter: pd.DataFrame, uid_field: str, iid_field: str, time_field: str | None, spec: SplitSpec,
    launch: pd.Series | None = None,
) -> FewShotSplit:
    """Split an interaction table (values as read from the atomic file) into a few-shot split.

    ``launch`` (item token -> launch time, NaN where unknown) replaces, under policy ``time``, the first
    interaction as the launch of the items it gives a time.
    """
    for name, key in ((uid_field, "USER_ID_FIELD"), (iid_field, "ITEM_ID_FIELD")):
        if name not in inter.columns:
            raise FewShotSplitError(
                f"the interactions have no {key} column {name!r} (columns: {list(inter.columns)}); "
                f"set {key} to the right field name"
            )
    if spec.policy == "time" and (time_field is None or time_field not in inter.columns):
        raise FewShotSplitError(
            f"fewshot.policy 'time' needs a timestamp field, but TIME_FIELD={time_field!r} is not among "
            f"{list(inter.columns)}: set TIME_FIELD, or use fewshot.policy: random"
        )

    table = inter[(inter[uid_field] != "") & (inter[iid_field] != "")].copy()
    tiebreak = _rng(spec.seed, "tiebreak").permutation(len(table))
    table["_tiebreak"] = tiebreak
    if time_field is not None and time_field in table.columns:
        table["_time"] = pd.to_numeric(table[time_field], errors="raise").astype(float)
    else:
        table["_time"] = 0.0
    # Chronological order with seeded tie-breaking; a user's repeat of an item keeps its first time.
    table = table.sort_values(["_time", "_tiebreak"], kind="stable")
    table = table.drop_duplicates([uid_field, iid_field], keep="first")

    counts = table.groupby(iid_field, sort=False).size()
    eligible = counts[counts >= spec.max_shots + 1].index.to_numpy()
    if spec.policy == "time":
        launch_times = table.groupby(iid_field, sort=False)["_time"].min().loc[eligible]
        if launch is not None:
            launch_times = launch.reindex(launch_times.index).fillna(launch_times)
        order_key = _rng(spec.seed, "launch-ties").permutation(len(eligible))
        ordered = pd.DataFrame({"item": eligible, "launch": launch_times.to_numpy(), "key": order_key})
        eligible = ordered.sort_values(["launch", "key"], kind="stable")["item"].to_numpy()
    else:
        eligible = np.sort(eligible)
        eligible = eligible[_rng(spec.seed, "eligible-order").permutation(len(eligible))]

    n_new = int(round(spec.new_item_ratio * len(eligible)))
    n_valid = int(round(spec.valid_share * n_new))
    if n_new < 2 or n_valid < 1 or n_valid >= n_new:
        raise FewShotSplitError(
            f"too few eligible items: {len(eligible)} items have >= max_shots+1 = {spec.max_shots + 1} "
            f"interactions, giving {n_new} new items ({n_valid} valid, {n_new - n_valid} test); both phases "
            "need at least one: lower fewshot.max_shots, or raise fewshot.new_item_ratio"
        )
    new_items = eligible[len(eligible) - n_new:]
    if spec.policy == "random":
        new_items = new_items[_rng(spec.seed, "phase").permutation(n_new)]
    valid_items, test_items = new_items[:n_valid], new_items[n_valid:]

    rank_in_item = table.groupby(iid_field, sort=False).cumcount()
    phase = pd.Series("train", index=table.index)
    is_valid = table[iid_field].isin(valid_items)
    is_test = table[iid_field].isin(test_items)
    is_query = rank_in_item >= spec.shots
    phase[is_valid & is_query] = "valid"
    phase[is_test & is_query] = "test"

    # Item ids follow first appearance in train, valid, test: group rows by a seeded item permutation.
    all_items = np.sort(table[iid_field].unique())
    item_rank = pd.Series(_rng(spec.seed, "item-ids").permutation(len(all_items)), index=all_items)
    table["_item_rank"] = table[iid_field].map(item_rank).to_numpy()
    table = table.sort_values(["_item_rank", "_time", "_tiebreak"], kind="stable")
    phase = phase.loc[table.index]
    helper_columns = ["_tiebreak", "_time", "_item_rank"]
    parts = {name: table[phase == name].drop(columns=helper_columns) for name in PHASES}

    stats = {
        "users": int(table[uid_field].nunique()),
        "items": int(len(all_items)),
        "interactions": int(len(table)),
        "duplicates_removed": int(len(inter) - len(table)),
        "eligible_items": int(len(eligible)),
        "valid_new_items": int(len(valid_items)),
        "test_new_items": int(len(test_items)),
        "train_interactions": int(len(parts["train"])),
        "valid_support_interactions": int((is_valid & ~is_query).sum()),
        "test_support_interactions": int((is_test & ~is_query).sum()),
        "valid_query_interactions": int(len(parts["valid"])),
        "test_query_interactions": int(len(parts["test"])),
        "valid_users": int(parts["valid"][uid_field].nunique()),
        "test_users": int(parts["test"][uid_field].nunique()),
    }
    return FewShotSplit(
        train=parts["train"], valid=parts["valid"], test=parts["test"],
        valid_new_items=[str(i) for i in valid_items], test_new_items=[str(i) for i in test_items],
        stats=stats,
    )


@dataclass(frozen=True)
class SourceDataset:
    """An atomic-file dataset on disk: ``<path>/<name>.inter`` and optional ``.item`` / ``.user``."""

    name: str
    path: Path
    uid_field: str = "user_id"
    iid_field: str = "item_id"
    time_field: str | None = DEFAULT_TIME_FIELD

    def file(self, suffix: str) -> Path:
        return self.path / f"{self.name}.{suffix}"

    def checksum(self) -> str:
        """SHA-256 over the source files, so a cached split is rebuilt when the data change."""
        digest = hashlib.sha256()
        for suffix in ("inter", "item", "user"):
            path = self.file(suffix)
            if path.is_file():
                digest.update(suffix.encode())
                with open(path, "rb") as handle:
                    for block in iter(lambda: handle.read(1 << 20), b""):
                        digest.update(block)
        return digest.hexdigest()


def embedded_data_path(dataset: str) -> Path | None:
    """The folder RecBole ships for ``dataset`` inside its wheel (ml-100k), if any."""
    import recbole

    path = Path(recbole.__file__).parent / "dataset_example" / dataset
    return path if path.is_dir() else None


def resolve_source(dataset: str, data_path: str | os.PathLike | None, **fields) -> SourceDataset:
    """Find a source dataset the way RecBole does: ``<data_path>/<dataset>``, or the embedded copy."""
    candidates = []
    if data_path is not None:
        candidates.append(Path(data_path) / dataset)
    embedded = embedded_data_path(dataset)
    if embedded is not None:
        candidates.append(embedded)
    for path in candidates:
        if (path / f"{dataset}.inter").is_file():
            return SourceDataset(dataset, path, **fields)
    looked = ", ".join(str(p / f"{dataset}.inter") for p in candidates) or "nowhere"
    raise FewShotSplitError(
        f"dataset {dataset!r}: no interaction file found (looked at {looked}); pass data_path / --data-path "
        "pointing to the folder that holds <dataset>/<dataset>.inter"
    )


def _manifest_for(source: SourceDataset, spec: SplitSpec, name: str, split: FewShotSplit, checksum: str,
                  headers: dict[str, list[str]]) -> dict:
    return {
        "format": 1,
        "name": name,
        "source": source.name,
        "source_checksum": checksum,
        **asdict(spec),
        "fields": {"USER_ID_FIELD": source.uid_field, "ITEM_ID_FIELD": source.iid_field,
                   "TIME_FIELD": source.time_field},
        "load_col": {suffix: [cell.split(":", 1)[0] for cell in header] for suffix, header in headers.items()},
        "stats": split.stats,
        "valid_new_items": split.valid_new_items,
        "test_new_items": split.test_new_items,
    }


def field_names(path: str | os.PathLike) -> list[str]:
    """The field names of an atomic file's header (its first line only)."""
    with open(path, encoding="utf-8") as handle:
        return [cell.split(":", 1)[0] for cell in handle.readline().rstrip("\r\n").split(FIELD_SEPARATOR)]


def launch_times(source: SourceDataset) -> pd.Series | None:
    """The ``launch_time`` field of the source's ``.item`` file, if it has one: item token -> seconds,
    NaN where empty."""
    path = source.file("item")
    if not path.is_file():
        return None
    names = field_names(path)
    if LAUNCH_FIELD not in names or source.iid_field not in names:
        return None
    table, _ = read_atomic(path)
    values = pd.to_numeric(table[LAUNCH_FIELD].replace("", np.nan), errors="coerce")
    bad = values.isna() & (table[LAUNCH_FIELD] != "")
    if bad.any():
        raise FewShotSplitError(
            f"{path}: {LAUNCH_FIELD} holds {int(bad.sum())} value(s) that are no number, e.g. "
            f"{table.loc[bad, LAUNCH_FIELD].iloc[0]!r}: write launch times as unix seconds, or leave them empty")
    return pd.Series(values.to_numpy(dtype=float), index=table[source.iid_field].to_numpy())


def manifest_path(split_dir: str | os.PathLike, name: str) -> Path:
    return Path(split_dir) / f"{name}.{MANIFEST_SUFFIX}"


def read_manifest(path: str | os.PathLike) -> dict:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def materialize(source: SourceDataset, spec: SplitSpec, out: str | os.PathLike) -> tuple[str, dict]:
    """Write the split of ``source`` under ``out/<name>/`` and return ``(name, manifest)``.

    An existing identical split (same parameters, same source checksum) is reused; a different split
    under the same name is an error. Files are written into a temporary folder that is renamed into
    place, so a failure leaves nothing behind.
    """
    out = Path(out)
    if source.time_field in (None, DEFAULT_TIME_FIELD) and source.time_field not in field_names(source.file("inter")):
        spec = spec.without_timestamps(source.name, str(source.path))
    checksum = source.checksum()
    name = spec.split_name(source.name, checksum)
    target = out / name
    existing = manifest_path(target, name)
    if existing.is_file():
        old = read_manifest(existing)
        if old.get("source_checksum") == checksum and all(old.get(k) == v for k, v in asdict(spec).items()):
            return name, old
        raise FewShotSplitError(
            f"{target} already holds a different split named {name!r} (other source data or parameters); "
            "choose another --out folder or delete that one"
        )
    if target.exists():
        raise FewShotSplitError(f"{target} exists but holds no {MANIFEST_SUFFIX}: choose another --out folder or delete it")

    inter, inter_header = read_atomic(source.file("inter"))
    time_field = source.time_field if source.time_field in inter.columns else None
    launch = launch_times(source) if spec.policy == "time" else None
    split = split_interactions(inter, source.uid_field, source.iid_field, time_field, spec, launch)
    headers = {"inter": inter_header}

    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out, prefix=f".{name}."))
    try:
        for phase in PHASES:
            write_atomic(getattr(split, phase), inter_header, staging / f"{name}.{phase}.inter")
        for suffix in ("item", "user"):
            if source.file(suffix).is_file():
                table, header = read_atomic(source.file(suffix))
                key_field = source.iid_field if suffix == "item" else source.uid_field
                if key_field not in field_types(header):
                    raise FewShotSplitError(
                        f"{source.file(suffix)} has no {key_field!r} column: its header must name the "
                        f"{'ITEM' if suffix == 'item' else 'USER'}_ID_FIELD"
                    )
                write_atomic(table, header, staging / f"{name}.{suffix}")
                headers[suffix] = header
        manifest = _manifest_for(source, spec, name, split, checksum, headers)
        with open(staging / f"{name}.{MANIFEST_SUFFIX}", "w", encoding="utf-8") as handle:
            json.dump(manifest, handle, indent=1)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return name, manifest


def summary_lines(manifest: dict) -> list[str]:
    """Human-readable split summary for the log."""
    s = manifest["stats"]
    return [
        f"few-shot split {manifest['name']}: K={manifest['shots']} policy={manifest['policy']} seed={manifest['seed']}",
        f"  items {s['items']} (eligible {s['eligible_items']}), users {s['users']}, interactions {s['interactions']}",
        f"  new items: valid {s['valid_new_items']}, test {s['test_new_items']}; support interactions: "
        f"valid {s['valid_support_interactions']}, test {s['test_support_interactions']}",
        f"  query interactions: valid {s['valid_query_interactions']}, test {s['test_query_interactions']}; "
        f"evaluated users: valid {s['valid_users']}, test {s['test_users']}",
    ]

