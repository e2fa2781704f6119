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
