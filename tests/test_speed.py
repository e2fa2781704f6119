"""``recbole-fewshot bench-speed``: the figures it returns are the ones it prints, as ratios to BPR's."""

from __future__ import annotations

import math

import pytest

from recbole_fewshot.benchmark.speed import bench_speed


def test_bench_speed_measures_fewshotrec_against_bpr(planted_source, in_tmp, capsys):
    figures = bench_speed("planted", shots=2, epochs=1, out=str(in_tmp / "speed"), data_path=str(planted_source),
                          overrides={"embedding_size": 16, "train_batch_size": 256})
    bpr = figures["models"]["BPR"]
    assert figures["device"] in ("cpu", "cuda:0") and bpr["epoch_s"] > 0 and bpr["eval_s"] > 0
    printed = capsys.readouterr().out
    for label in ("FewShotRec-GRU", "FewShotRec-CNN"):
        row = figures["models"][label]
        assert row["epoch_ratio"] == pytest.approx(row["epoch_s"] / bpr["epoch_s"])
        assert row["eval_ratio"] == pytest.approx(row["eval_s"] / bpr["eval_s"])
        assert row["onboard_items_per_s"] > 0 and row["peak_mb"] > 0
        assert math.isnan(row["gpu_peak_mb"]) == (figures["device"] == "cpu")
        line = next(text for text in printed.splitlines() if text.startswith(label))
        assert f"{row['epoch_ratio']:.2f}" in line and f"{row['onboard_items_per_s']:.0f}" in line
        assert row["encoder_epoch_s"] > 0 and row["encoder_eval_s"] > 0
        assert row["encoder_epoch_ratio"] == pytest.approx(row["encoder_epoch_s"] / bpr["epoch_s"])
        assert row["encoder_eval_ratio"] == pytest.approx(row["encoder_eval_s"] / bpr["eval_s"])
        floor = next(text for text in printed.splitlines() if text.startswith(f"{label} encoder alone"))
        assert f"{row['encoder_epoch_ratio']:.2f}x" in floor and f"{row['encoder_eval_ratio']:.2f}x" in floor


def test_bench_speed_times_whole_cells_against_deepmusics(planted_source, in_tmp, capsys):
    figures = bench_speed("planted", shots=2, epochs=1, out=str(in_tmp / "speed"), data_path=str(planted_source),
                          overrides={"embedding_size": 16, "train_batch_size": 256, "epochs": 3, "stopping_step": 1})
    assert figures["backbone_s"] > 0
    deepmusic = figures["cells"]["DeepMusic"]
    assert deepmusic["cell_ratio"] == pytest.approx(1.0)
    printed = capsys.readouterr().out
    for label, row in figures["cells"].items():
        assert 0 <= row["best_epoch"] < 3 and 0 < row["to_best_s"] < row["cell_s"]
        assert row["cell_s"] == pytest.approx(figures["backbone_s"] + row["to_best_s"])
        assert row["cell_ratio"] == pytest.approx(row["cell_s"] / deepmusic["cell_s"])
        line = next(text for text in printed.splitlines() if text.startswith(label) and "x BPR" not in text
                    and text.split()[1].isdigit())
        assert f"{row['cell_ratio']:.2f}" in line
