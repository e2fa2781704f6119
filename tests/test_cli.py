"""The ``recbole-fewshot`` command: ``split`` and ``run`` (also as ``python -m recbole_fewshot``)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from recbole_fewshot.cli import main
from recbole_fewshot.data.split import SourceDataset, SplitSpec, read_manifest

pytestmark = pytest.mark.usefixtures("in_tmp")
SPLIT_ARGS = ["--dataset", "planted", "--shots", "2", "--max-shots", "3", "--new-item-ratio", "0.3"]
FAST = ["--epochs=1", "--embedding_size=8", "--show_progress=False", "--state=ERROR", "--topk=[5]",
        "--metrics=['NDCG','Recall']", "--valid_metric=NDCG@5"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def expected_name(source_root: Path, **spec) -> str:
    source = SourceDataset("planted", source_root / "planted")
    return SplitSpec(**spec).split_name("planted", source.checksum())


def test_split_prints_the_name_last(planted_source, in_tmp, capsys):
    out = in_tmp / "splits"
    assert main(["split", *SPLIT_ARGS, "--data-path", str(planted_source), "--out", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    name = lines[-1]
    assert name == expected_name(planted_source, shots=2, max_shots=3, new_item_ratio=0.3)
    assert lines[0].startswith(f"few-shot split {name}: K=2")
    manifest = read_manifest(out / name / f"{name}.fewshot.json")
    assert (manifest["shots"], manifest["max_shots"], manifest["new_item_ratio"]) == (2, 3, 0.3)
    for phase in ("train", "valid", "test"):
        assert (out / name / f"{name}.{phase}.inter").is_file()
    # again: the existing split is reused and the name is still the last line
    assert main(["split", *SPLIT_ARGS, "--data-path", str(planted_source), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == name


def test_split_options_reach_the_spec(planted_source, in_tmp, capsys):
    out = in_tmp / "splits"
    args = ["split", "--dataset", "planted", "--shots", "1", "--max-shots", "2", "--policy", "random",
            "--new-item-ratio", "0.4", "--valid-share", "0.25", "--seed", "7", "--data-path", str(planted_source),
            "--out", str(out)]
    assert main(args) == 0
    name = capsys.readouterr().out.strip().splitlines()[-1]
    assert name == expected_name(planted_source, shots=1, max_shots=2, policy="random", new_item_ratio=0.4,
                                 valid_share=0.25, seed=7)
    assert read_manifest(out / name / f"{name}.fewshot.json")["stats"]["valid_new_items"] == round(0.25 * round(0.4 * 200))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--shots", "-1"], "fewshot.shots"),
        (["--shots", "4", "--max-shots", "3"], "fewshot.max_shots"),
        (["--shots", "1", "--max-shots", "3", "--new-item-ratio", "1.5"], "fewshot.new_item_ratio"),
        (["--shots", "1", "--max-shots", "3", "--time-field", "when"], "TIME_FIELD"),
        (["--shots", "1", "--max-shots", "3", "--item-field", "sku"], "ITEM_ID_FIELD"),
    ],
)
def test_split_errors_exit_2_naming_the_key(planted_source, in_tmp, capsys, extra, message):
    code = main(["split", "--dataset", "planted", *extra, "--data-path", str(planted_source),
                 "--out", str(in_tmp / "splits")])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.startswith("recbole-fewshot: error: ") and message in captured.err
    splits = in_tmp / "splits"
    assert not splits.exists() or not list(splits.iterdir())  # nothing written


def test_split_unknown_dataset(in_tmp, capsys):
    assert main(["split", "--dataset", "nowhere", "--shots", "1", "--data-path", str(in_tmp),
                 "--out", str(in_tmp / "splits")]) == 2
    assert "no interaction file found" in capsys.readouterr().err


def test_split_refuses_stray_arguments(planted_source, in_tmp):
    with pytest.raises(SystemExit) as caught:
        main(["split", *SPLIT_ARGS, "--data-path", str(planted_source), "--out", str(in_tmp), "--epochs=3"])
    assert caught.value.code == 2


def parse_result(stdout: str) -> tuple[dict, dict]:
    lines = stdout.strip().splitlines()
    assert lines[-2].startswith("best valid: ") and lines[-1].startswith("test result: ")
    return ast.literal_eval(lines[-2][len("best valid: "):]), ast.literal_eval(lines[-1][len("test result: "):])


def test_run_with_overrides_and_config_files(planted_k2, in_tmp, capsys):
    name, data_path = planted_k2
    config_file = in_tmp / "run.yaml"
    config_file.write_text(yaml.safe_dump({"topk": [3], "checkpoint_dir": str(in_tmp / "saved"),
                                           "train_batch_size": 256}))
    code = main(["run", "--model", "BPR", "--dataset", name, "--config-files", str(config_file),
                 f"--data_path={data_path}", *FAST])
    assert code == 0
    valid, test = parse_result(capsys.readouterr().out)
    assert set(test) == {"ndcg@5", "recall@5"}  # the command line wins over the config file
    assert set(valid) == set(test)
    assert list((in_tmp / "saved").glob("BPR-*.pth"))  # and the config file was read
    code = main(["run", "--model", "Pop", "--dataset", name, "--config-files", str(config_file),
                 f"--data_path={data_path}", "--epochs=1", "--state=ERROR", "--show_progress=False",
                 "--valid_metric=NDCG@3"])
    assert code == 0
    assert set(parse_result(capsys.readouterr().out)[1]) == {"recall@3", "mrr@3", "ndcg@3", "hit@3", "precision@3"}


def test_overrides_with_spaces_are_not_taken_for_option_values(planted_k2, in_tmp, capsys):
    name, data_path = planted_k2
    config_file = in_tmp / "run.yaml"
    config_file.write_text(yaml.safe_dump({"epochs": 1}))
    code = main(["run", "--model", "Pop", "--dataset", name, "--config-files", str(config_file), "--topk=[3, 4]",
                 f"--data_path={data_path}", "--state=ERROR", "--show_progress=False", "--valid_metric=Recall@3"])
    assert code == 0
    assert {key.split("@")[1] for key in parse_result(capsys.readouterr().out)[1]} == {"3", "4"}


def test_run_refuses_malformed_overrides(planted_k2, in_tmp):
    name, data_path = planted_k2
    for bad in (["--epochs", "1"], ["epochs=1"], ["--a=b=c"]):
        with pytest.raises(SystemExit) as caught:
            main(["run", "--model", "BPR", "--dataset", name, f"--data_path={data_path}", *bad])
        assert caught.value.code == 2


def test_python_dash_m_split(planted_source, in_tmp):
    done = subprocess.run(
        [sys.executable, "-m", "recbole_fewshot", "split", *SPLIT_ARGS, "--data-path", str(planted_source),
         "--out", str(in_tmp / "splits")],
        capture_output=True, text=True, timeout=300, cwd=in_tmp, env=ENV)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == expected_name(planted_source, shots=2, max_shots=3, new_item_ratio=0.3)


def test_console_script_run(planted_k2, in_tmp):
    name, data_path = planted_k2
    script = Path(sys.executable).parent / "recbole-fewshot"
    if not script.is_file():
        pytest.skip("the package is not installed with its console script")
    done = subprocess.run(
        [str(script), "run", "--model", "BPR", "--dataset", name, f"--data_path={data_path}", *FAST,
         f"--checkpoint_dir={in_tmp / 'saved'}"],
        capture_output=True, text=True, timeout=300, cwd=in_tmp, env=ENV)
    assert done.returncode == 0, done.stderr[-3000:]
    assert set(parse_result(done.stdout)[1]) == {"ndcg@5", "recall@5"}
    assert (in_tmp / "log").is_dir()  # RecBole's log folder went to the working directory
    assert "Warning" not in done.stderr, done.stderr[-3000:]  # RecBole's pandas/torch deprecations are silenced


def test_run_names_an_unknown_model_in_one_line(capsys):
    assert main(["run", "--model", "NoSuch", "--dataset", "ml-100k"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--model NoSuch is no model or variant" in err[0] and "--list-models" in err[0]


def test_run_accepts_a_variant_name_as_its_model_and_settings(monkeypatch):
    import recbole_fewshot.distributed as distributed

    seen = {}

    def fake_run(**kwargs):
        seen.update(kwargs)
        return {"best_valid_result": {}, "test_result": {}}

    monkeypatch.setattr(distributed, "run_distributed", fake_run)
    assert main(["run", "--model", "FewShotRec-CNN", "--dataset", "ml-100k"]) == 0
    assert seen["model"] == "FewShotRec" and seen["config_dict"]["behaviour_encoder"] == "cnn"


def test_importing_the_package_prints_no_third_party_warning():
    result = subprocess.run([sys.executable, "-c", "import recbole_fewshot"], capture_output=True, text=True, check=True)
    assert "pkg_resources" not in result.stderr, result.stderr


def test_benchmark_and_tune_take_the_split_settings_and_document_overrides():
    from recbole_fewshot.cli import _split_options, build_parser

    parser = build_parser()
    for command in (["benchmark", "--out", "x"], ["tune", "--models", "BPR", "--trials", "1", "--out", "x"]):
        args = parser.parse_args([*command, "--new-item-ratio", "0.3", "--valid-share", "0.4", "--max-shots", "5"])
        assert _split_options(args) == {"policy": "time", "new_item_ratio": 0.3, "valid_share": 0.4, "max_shots": 5}
    help_text = parser._subparsers._group_actions[0].choices["benchmark"].format_help()
    assert "--new-item-ratio" in help_text and "--key=value" in help_text
    assert "--backbone_epochs=N caps the warm backbone" in " ".join(help_text.split())
