"""Bad split input gives a FewShotSplitError naming the key, and a failed split leaves nothing behind."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pandas as pd
import pytest

from planted import write_planted_dataset
from recbole_fewshot.data import split as split_module
from recbole_fewshot.data.atomic import read_atomic, write_atomic
from recbole_fewshot.data.split import (
    FewShotSplitError,
    SourceDataset,
    SplitSpec,
    manifest_path,
    materialize,
    split_interactions,
)

U, I, T = "user_id", "item_id", "timestamp"


def small_table(n_items: int = 30, n_users: int = 8) -> pd.DataFrame:
    rows = [(f"u{u}", f"i{i}", str(10 * i + u)) for i in range(n_items) for u in range(n_users)]
    return pd.DataFrame(rows, columns=[U, I, T])


def leftovers(out: Path) -> list[str]:
    """Everything under ``out`` (hidden files too); [] when ``out`` does not exist."""
    return sorted(str(p.relative_to(out)) for p in out.rglob("*")) if out.exists() else []


# --- parameters --------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("kwargs", "keys"),
    [
        ({"shots": -1}, ["fewshot.shots", ">= 0"]),
        ({"shots": 1.5}, ["fewshot.shots", "integer"]),
        ({"shots": "3"}, ["fewshot.shots", "integer"]),
        ({"shots": True}, ["fewshot.shots", "integer"]),
        ({"shots": None}, ["fewshot.shots", "integer"]),
        ({"shots": 4, "max_shots": 3}, ["fewshot.shots=4", "fewshot.max_shots=3"]),
        ({"shots": 1, "max_shots": 2.0}, ["fewshot.max_shots", "integer"]),
        ({"shots": 1, "seed": "2020"}, ["fewshot.seed", "integer"]),
        ({"shots": 1, "policy": "chronological"}, ["fewshot.policy"]),
        ({"shots": 1, "new_item_ratio": 0}, ["fewshot.new_item_ratio", "between 0 and 1"]),
        ({"shots": 1, "new_item_ratio": 1}, ["fewshot.new_item_ratio"]),
        ({"shots": 1, "new_item_ratio": 1.0}, ["fewshot.new_item_ratio"]),
        ({"shots": 1, "new_item_ratio": -0.2}, ["fewshot.new_item_ratio"]),
        ({"shots": 1, "new_item_ratio": 1.5}, ["fewshot.new_item_ratio"]),
        ({"shots": 1, "new_item_ratio": math.nan}, ["fewshot.new_item_ratio"]),
        ({"shots": 1, "new_item_ratio": "0.2"}, ["fewshot.new_item_ratio"]),
        ({"shots": 1, "new_item_ratio": True}, ["fewshot.new_item_ratio"]),
        ({"shots": 1, "valid_share": 0.0}, ["fewshot.valid_share", "between 0 and 1"]),
        ({"shots": 1, "valid_share": 1}, ["fewshot.valid_share"]),
        ({"shots": 1, "valid_share": 2}, ["fewshot.valid_share"]),
    ],
)
def test_bad_parameters_name_the_key(kwargs, keys):
    with pytest.raises(FewShotSplitError) as caught:
        SplitSpec(**kwargs)
    for key in keys:
        assert key in str(caught.value)


def test_numpy_integers_are_accepted():
    import numpy as np

    assert SplitSpec(shots=np.int64(2), max_shots=np.int32(3)).shots == 2


@pytest.mark.parametrize(
    ("mapping", "keys"),
    [
        ({"shots": 1, "shot": 2}, ["unknown fewshot keys", "'shot'", "known keys"]),
        ({"K": 1}, ["unknown fewshot keys", "'K'"]),
        ({"policy": "time"}, ["fewshot.shots is required"]),
        ([1, 2], ["fewshot must be a mapping"]),
        (3, ["fewshot must be a mapping"]),
    ],
)
def test_bad_fewshot_block(mapping, keys):
    with pytest.raises(FewShotSplitError) as caught:
        SplitSpec.from_mapping(mapping)
    for key in keys:
        assert key in str(caught.value)


# --- input data --------------------------------------------------------------------------------

@pytest.mark.parametrize("time_field", [None, "timestamp", "time"])
def test_time_policy_without_timestamp_field(time_field):
    table = small_table().drop(columns=[T])
    with pytest.raises(FewShotSplitError) as caught:
        split_interactions(table, U, I, time_field, SplitSpec(shots=1, max_shots=3, policy="time"))
    message = str(caught.value)
    assert "TIME_FIELD" in message and "fewshot.policy" in message
    # the fix the message suggests works
    split_interactions(table, U, I, None, SplitSpec(shots=1, max_shots=3, policy="random"))


def test_too_few_eligible_items():
    table = small_table(n_items=30, n_users=4)  # every item has 4 interactions
    with pytest.raises(FewShotSplitError) as caught:
        split_interactions(table, U, I, T, SplitSpec(shots=1, max_shots=4))
    message = str(caught.value)
    assert "too few eligible items" in message and "max_shots" in message and "new_item_ratio" in message
    split_interactions(table, U, I, T, SplitSpec(shots=1, max_shots=3))  # 4 >= max_shots + 1


def test_too_few_items_for_two_phases():
    table = small_table(n_items=4)  # 0.2 * 4 rounds to 1 new item: no valid and test phase
    with pytest.raises(FewShotSplitError, match="too few eligible items"):
        split_interactions(table, U, I, T, SplitSpec(shots=1, max_shots=3))


@pytest.mark.parametrize(("missing", "key"), [(U, "USER_ID_FIELD"), (I, "ITEM_ID_FIELD")])
def test_missing_user_or_item_field(missing, key):
    table = small_table().drop(columns=[missing])
    with pytest.raises(FewShotSplitError) as caught:
        split_interactions(table, U, I, T, SplitSpec(shots=1, max_shots=3))
    assert key in str(caught.value) and repr(missing) in str(caught.value)


@pytest.mark.parametrize(("fields", "key"), [({"uid_field": "customer"}, "USER_ID_FIELD"),
                                             ({"iid_field": "product"}, "ITEM_ID_FIELD")])
def test_materialize_with_wrong_field_names(tmp_path, planted_source, fields, key):
    source = SourceDataset("planted", planted_source / "planted", **fields)
    out = tmp_path / "out"
    with pytest.raises(FewShotSplitError, match=key):
        materialize(source, SplitSpec(shots=1, max_shots=3, new_item_ratio=0.3), out)
    assert leftovers(out) == []


def test_materialize_time_policy_on_dataset_without_timestamps_falls_back_to_random(tmp_path, caplog):
    folder = tmp_path / "src" / "notime"
    folder.mkdir(parents=True)
    write_atomic(small_table().drop(columns=[T]), ["user_id:token", "item_id:token"], folder / "notime.inter")
    source = SourceDataset("notime", folder)
    with caplog.at_level("WARNING", logger="recbole_fewshot.data.split"):
        name, manifest = materialize(source, SplitSpec(shots=1, max_shots=3), tmp_path / "out")
    assert "notime: the interactions have no timestamps" in caplog.text and "fewshot.policy: random" in caplog.text
    assert manifest["policy"] == "random" and "-random-" in name
    caplog.clear()
    # the same split as asking for random, which warns about nothing
    with caplog.at_level("WARNING", logger="recbole_fewshot.data.split"):
        assert materialize(source, SplitSpec(shots=1, max_shots=3, policy="random"), tmp_path / "out") == (name, manifest)
    assert caplog.text == ""
    assert (tmp_path / "out" / name / f"{name}.train.inter").is_file()


def test_item_file_without_item_field(tmp_path, planted_source):
    item_file = planted_source / "planted" / "planted.item"
    table, header = read_atomic(item_file)
    write_atomic(table.rename(columns={"item_id": "sku"}), ["sku:token", *header[1:]], item_file)
    out = tmp_path / "out"
    with pytest.raises(FewShotSplitError) as caught:
        materialize(SourceDataset("planted", planted_source / "planted"), SplitSpec(shots=1, max_shots=3, new_item_ratio=0.3), out)
    assert "'item_id'" in str(caught.value) and "ITEM_ID_FIELD" in str(caught.value)
    assert leftovers(out) == []


# --- the output folder -------------------------------------------------------------------------

SPEC = SplitSpec(shots=1, max_shots=3, new_item_ratio=0.3)


def test_existing_identical_split_is_reused_without_rewriting(tmp_path, planted_source):
    source = SourceDataset("planted", planted_source / "planted")
    out = tmp_path / "out"
    name, manifest = materialize(source, SPEC, out)
    files = sorted((out / name).iterdir())
    mtimes = [os.stat(f).st_mtime_ns for f in files]
    name2, manifest2 = materialize(source, SPEC, out)
    assert (name2, manifest2) == (name, manifest)
    assert sorted((out / name).iterdir()) == files
    assert [os.stat(f).st_mtime_ns for f in files] == mtimes


@pytest.mark.parametrize("tamper", ["seed", "source_checksum", "shots"])
def test_different_split_under_the_same_name(tmp_path, planted_source, tamper):
    source = SourceDataset("planted", planted_source / "planted")
    out = tmp_path / "out"
    name, _ = materialize(source, SPEC, out)
    path = manifest_path(out / name, name)
    manifest = json.loads(path.read_text())
    manifest[tamper] = manifest[tamper] + (1 if isinstance(manifest[tamper], int) else "0")
    path.write_text(json.dumps(manifest))
    before = leftovers(out)
    with pytest.raises(FewShotSplitError) as caught:
        materialize(source, SPEC, out)
    assert "different split" in str(caught.value) and name in str(caught.value)
    assert leftovers(out) == before


def test_target_folder_without_manifest(tmp_path, planted_source):
    source = SourceDataset("planted", planted_source / "planted")
    out = tmp_path / "out"
    name = SPEC.split_name("planted", source.checksum())
    (out / name).mkdir(parents=True)
    (out / name / "mine.txt").write_text("keep me")
    with pytest.raises(FewShotSplitError, match="holds no"):
        materialize(source, SPEC, out)
    assert leftovers(out) == [name, f"{name}/mine.txt"]


def test_changed_source_data_gives_another_name(tmp_path, planted_source):
    source = SourceDataset("planted", planted_source / "planted")
    name, _ = materialize(source, SPEC, tmp_path / "out")
    inter = planted_source / "planted" / "planted.inter"
    inter.write_text(inter.read_text() + "u0\ti199\t1999999\n")
    name2, _ = materialize(source, SPEC, tmp_path / "out")
    assert name2 != name and name2.rsplit("-", 1)[0] == name.rsplit("-", 1)[0]


# --- nothing half-written ----------------------------------------------------------------------

def test_malformed_item_file_mid_way_leaves_nothing(tmp_path, planted_source):
    item_file = planted_source / "planted" / "planted.item"
    lines = item_file.read_text().splitlines()
    lines[len(lines) // 2] += "\textra\tcells"  # the .item file is read after the .inter files are written
    item_file.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    with pytest.raises(Exception):
        materialize(SourceDataset("planted", planted_source / "planted"), SPEC, out)
    assert leftovers(out) == []


def test_malformed_inter_file_leaves_nothing(tmp_path, planted_source):
    inter = planted_source / "planted" / "planted.inter"
    inter.write_text("user_id\titem_id\ttimestamp\n" + "\n".join(inter.read_text().splitlines()[1:]) + "\n")
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="header"):
        materialize(SourceDataset("planted", planted_source / "planted"), SPEC, out)
    assert leftovers(out) == []


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
@pytest.mark.parametrize("fail_at", [1, 2, 4])
def test_failed_write_leaves_nothing_and_a_retry_succeeds(tmp_path, planted_source, monkeypatch, error, fail_at):
    calls = []
    real_write = split_module.write_atomic

    def flaky_write(table, header, path):
        calls.append(path)
        if len(calls) == fail_at:
            real_write(table.iloc[: len(table) // 2], header, path)  # half a file, then the failure
            raise error
        real_write(table, header, path)

    monkeypatch.setattr(split_module, "write_atomic", flaky_write)
    source = SourceDataset("planted", planted_source / "planted")
    out = tmp_path / "out"
    with pytest.raises(type(error)):
        materialize(source, SPEC, out)
    assert len(calls) == fail_at
    assert leftovers(out) == []
    monkeypatch.setattr(split_module, "write_atomic", real_write)
    name, _ = materialize(source, SPEC, out)
    assert leftovers(out)[0] == name


def test_failed_manifest_write_leaves_nothing(tmp_path, planted_source, monkeypatch):
    def broken_dump(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(split_module.json, "dump", broken_dump)
    out = tmp_path / "out"
    with pytest.raises(OSError):
        materialize(SourceDataset("planted", planted_source / "planted"), SPEC, out)
    assert leftovers(out) == []


# --- the config-driven path --------------------------------------------------------------------

def config_with(tmp_path, planted_source, dataset="planted", **config_dict):
    from recbole.config import Config

    return Config(model="BPR", dataset=dataset, config_dict={
        "data_path": str(planted_source), "fewshot_cache_dir": str(tmp_path / "cache"), **config_dict})




@pytest.mark.usefixtures("in_tmp")
@pytest.mark.parametrize(
    ("block", "keys"),
    [
        ({"shots": 1, "max_shot": 3}, ["unknown fewshot keys", "'max_shot'"]),
        ({"max_shots": 3}, ["fewshot.shots is required"]),
        ({"shots": 5, "max_shots": 3}, ["fewshot.shots=5", "fewshot.max_shots=3"]),
        ({"shots": 1, "max_shots": 3, "new_item_ratio": 1.2}, ["fewshot.new_item_ratio"]),
        pytest.param("three", ["fewshot must be a mapping"]),
        pytest.param(3, ["fewshot must be a mapping"]),
    ],
)
def test_bad_fewshot_block_in_config(tmp_path, planted_source, block, keys):
    with pytest.raises(FewShotSplitError) as caught:
        config_with(tmp_path, planted_source, fewshot=block)
    for key in keys:
        assert key in str(caught.value)
    assert [p for p in leftovers(tmp_path / "cache") if not p.endswith(".lock")] == []


@pytest.mark.usefixtures("in_tmp")
def test_time_policy_in_config_without_timestamp_field_falls_back_to_random(tmp_path, caplog):
    data_path = tmp_path / "src"
    (data_path / "notime").mkdir(parents=True)
    write_atomic(small_table().drop(columns=[T]), ["user_id:token", "item_id:token"],
                 data_path / "notime" / "notime.inter")
    with caplog.at_level("WARNING", logger="recbole_fewshot.data.split"):
        config = config_with(tmp_path, data_path, dataset="notime", fewshot={"shots": 1, "max_shots": 3},
                             load_col={"inter": ["user_id", "item_id"]})
    assert config.dataset.startswith("notime-fewshot-k1-random-")
    assert "fewshot.policy: random" in caplog.text


@pytest.mark.usefixtures("in_tmp")
def test_unknown_source_dataset_in_config(tmp_path, planted_source):
    with pytest.raises(FewShotSplitError, match="no interaction file found"):
        config_with(tmp_path, planted_source, dataset="nothere", fewshot={"shots": 1})


@pytest.mark.usefixtures("in_tmp")
def test_bad_candidate_mode(tmp_path, planted_source):
    with pytest.raises(FewShotSplitError, match="fewshot_candidates"):
        config_with(tmp_path, planted_source, fewshot={"shots": 1, "max_shots": 3, "new_item_ratio": 0.3},
                    fewshot_candidates="warm")


@pytest.mark.usefixtures("in_tmp")
def test_candidate_mode_on_a_dataset_that_is_no_split(tmp_path, planted_source):
    with pytest.raises(FewShotSplitError, match="not a few-shot split"):
        config_with(tmp_path, planted_source, fewshot_candidates="new")


def test_planted_helper_is_deterministic(tmp_path):
    """Guard for the fixtures above: the planted source is the same for the same seed."""
    a = write_planted_dataset(tmp_path / "a") / "planted" / "planted.inter"
    b = write_planted_dataset(tmp_path / "b") / "planted" / "planted.inter"
    assert a.read_bytes() == b.read_bytes()
