"""The config-driven path (a ``fewshot:`` block on the source dataset) and one end-to-end run on ml-100k."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from recbole.data.dataloader import FullSortEvalDataLoader

from conftest import build_pipeline, fast_config
from planted import train_and_test
from recbole_fewshot.cli import main
from recbole_fewshot.data.dataloader import NewItemFullSortEvalDataLoader
from recbole_fewshot.data.split import SourceDataset, SplitSpec, materialize, read_manifest

pytestmark = pytest.mark.usefixtures("in_tmp")
BLOCK = {"shots": 2, "max_shots": 3, "new_item_ratio": 0.3}


def snapshot(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): os.stat(p).st_mtime_ns for p in sorted(folder.rglob("*"))}


def test_fewshot_block_materialises_and_is_cached(planted_source, in_tmp):
    from recbole.config import Config

    cache = in_tmp / "cache"
    source = SourceDataset("planted", planted_source / "planted")
    name = SplitSpec(**BLOCK).split_name("planted", source.checksum())
    config = Config(model="BPR", dataset="planted",
                    config_dict={"data_path": str(planted_source), "fewshot": BLOCK, "fewshot_cache_dir": str(cache)})
    assert config["dataset"] == name
    assert Path(config["data_path"]) == cache / name
    assert config["fewshot_manifest"] == str(cache / name / f"{name}.fewshot.json")
    assert config["benchmark_filename"] == ["train", "valid", "test"]
    assert read_manifest(config["fewshot_manifest"])["shots"] == 2
    before = snapshot(cache / name)
    assert set(before) == {f"{name}.{suffix}" for suffix in
                           ("train.inter", "valid.inter", "test.inter", "item", "fewshot.json")}
    assert not [p for p in cache.iterdir() if p.name.startswith(f".{name}")]
    Config(model="Pop", dataset="planted",
           config_dict={"data_path": str(planted_source), "fewshot": BLOCK, "fewshot_cache_dir": str(cache)})
    assert snapshot(cache / name) == before  # reused, not rewritten
    assert sorted(p.name for p in cache.iterdir() if p.is_dir()) == [name]


def test_default_cache_dir_is_under_the_working_directory(planted_source, in_tmp):
    from recbole.config import Config

    config = Config(model="BPR", dataset="planted", config_dict={"data_path": str(planted_source), "fewshot": BLOCK})
    assert Path(config["data_path"]).parent.resolve() == (in_tmp / "dataset" / "fewshot_cache").resolve()


def test_changed_source_gives_a_new_cached_split(planted_source, in_tmp):
    from recbole.config import Config

    cache = in_tmp / "cache"
    settings = {"data_path": str(planted_source), "fewshot": BLOCK, "fewshot_cache_dir": str(cache)}
    first = Config(model="BPR", dataset="planted", config_dict=settings)["dataset"]
    inter = planted_source / "planted" / "planted.inter"
    inter.write_text(inter.read_text() + "u1\ti3\t1999999\n")
    second = Config(model="BPR", dataset="planted", config_dict=settings)["dataset"]
    assert first != second
    assert sorted(p.name for p in cache.iterdir() if p.is_dir()) == sorted([first, second])


def test_user_config_overrides_manifest_defaults(planted_source, in_tmp):
    config, _, _, _, test_data = build_pipeline(
        "BPR", "planted", planted_source, in_tmp, fewshot=BLOCK, fewshot_cache_dir=str(in_tmp / "cache"),
        fewshot_candidates="all")
    assert config["fewshot_candidates"] == "all"
    assert type(test_data) is FullSortEvalDataLoader
    config, _, _, _, test_data = build_pipeline(
        "BPR", "planted", planted_source, in_tmp, fewshot=BLOCK, fewshot_cache_dir=str(in_tmp / "cache"))
    assert config["fewshot_candidates"] == "new"
    assert isinstance(test_data, NewItemFullSortEvalDataLoader)


def test_fewshot_block_from_a_config_file(planted_source, in_tmp):
    import yaml
    from recbole.config import Config

    config_file = in_tmp / "fewshot.yaml"
    config_file.write_text(yaml.safe_dump({"fewshot": BLOCK, "fewshot_cache_dir": str(in_tmp / "cache"),
                                           "data_path": str(planted_source)}))
    config = Config(model="BPR", dataset="planted", config_file_list=[str(config_file)])
    assert config["dataset"].startswith("planted-fewshot-k2-")


def test_config_driven_run_equals_the_materialised_run(planted_source, in_tmp):
    """Both ways in give the same split and so, with the same seeds, the same result."""
    name, _ = materialize(SourceDataset("planted", planted_source / "planted"), SplitSpec(**BLOCK), in_tmp / "splits")
    materialised = train_and_test("BPR", name, in_tmp / "splits", epochs=1)
    configured = train_and_test("BPR", "planted", planted_source, epochs=1, fewshot=BLOCK,
                                fewshot_cache_dir=str(in_tmp / "cache"))
    assert materialised == configured
    assert (in_tmp / "cache" / name).is_dir()


@pytest.mark.slow
def test_end_to_end_on_ml100k(in_tmp, capsys):
    """BPR and Pop through run_recbole on ml-100k, on a split written by the CLI and on a fewshot: block."""
    from recbole.quick_start import run_recbole

    assert main(["split", "--dataset", "ml-100k", "--shots", "3", "--out", str(in_tmp / "splits")]) == 0
    name = capsys.readouterr().out.strip().splitlines()[-1]
    assert name.startswith("ml-100k-fewshot-k3-time-")
    results = {}
    for model in ("BPR", "Pop"):
        common = fast_config(in_tmp / "splits", in_tmp, topk=[10], metrics=["NDCG", "Recall"],
                             valid_metric="NDCG@10", embedding_size=32, train_batch_size=2048)
        materialised = run_recbole(model=model, dataset=name, config_dict=common)
        configured = run_recbole(model=model, dataset="ml-100k", config_dict={
            **common, "data_path": str(in_tmp / "nowhere"),  # the source is RecBole's embedded ml-100k
            "fewshot": {"shots": 3}, "fewshot_cache_dir": str(in_tmp / "cache")})
        for result in (materialised, configured):
            assert set(result["test_result"]) == {"ndcg@10", "recall@10"}
            assert all(0 <= value <= 1 for value in result["test_result"].values())
        assert materialised["test_result"] == configured["test_result"]
        results[model] = materialised["test_result"]
    assert (in_tmp / "cache" / name).is_dir()
    assert results["Pop"]["recall@10"] > 0  # K=3: new items have some training popularity


def test_models_follow_the_splits_max_shots_unless_set(planted_source, in_tmp):
    from recbole.config import Config

    settings = {"data_path": str(planted_source), "fewshot": {**BLOCK, "max_shots": 4},
                "fewshot_cache_dir": str(in_tmp / "cache")}
    assert Config(model="FewShotRec", dataset="planted", config_dict=settings)["max_shots"] == 4
    assert Config(model="FewShotRec", dataset="planted", config_dict={**settings, "max_shots": 6})["max_shots"] == 6
