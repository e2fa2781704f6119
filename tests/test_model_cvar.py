"""CVAR: posterior samples in training, the prior mean at inference, a warm-up on support interactions."""

from __future__ import annotations

from pathlib import Path

import torch
from planted import FAST_CONFIG, planted_split, train_and_test
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.utils import get_model, init_seed

BACKBONE = {"backbone_epochs": 20, "backbone_learning_rate": 0.01}


def build(tmp_path: Path, shots: int = 0, **overrides):
    name, data_path = planted_split(tmp_path, shots=shots)
    config = Config(model="CVAR", dataset=name, config_dict={
        **FAST_CONFIG, "data_path": str(data_path), "checkpoint_dir": str(tmp_path / "saved"), **overrides})
    init_seed(config["seed"], config["reproducibility"])
    train_data, _, _ = data_preparation(config, create_dataset(config))
    return get_model("CVAR")(config, train_data._dataset).to(config["device"]), train_data


def test_training_samples_the_posterior(tmp_path):
    model, _ = build(tmp_path)
    model.train()
    warm = torch.nonzero(model.item_count > model.max_shots).view(-1)[:16]
    first, distance = model.reconstruct(warm)
    second, _ = model.reconstruct(warm)
    assert not torch.allclose(first, second)
    assert (distance >= 0).all()
    mean_q, _ = model.posterior(warm)
    assert not torch.allclose(first, model.decode(mean_q, warm))
    assert not torch.allclose(model.generate(warm), model.generate(warm))


def test_inference_decodes_the_prior_mean(tmp_path):
    model, _ = build(tmp_path)
    model.eval()
    cold = torch.nonzero(model.item_count[1:] == 0).view(-1) + 1
    warm = torch.nonzero(model.item_count > model.max_shots).view(-1)
    users = torch.tensor([1, 2, 3], device=model.device)
    with torch.no_grad():
        torch.testing.assert_close(model.generate(cold), model.generate(cold))
        mean_p, _ = model.prior(cold)
        expected = model.decode(mean_p, cold)
        torch.testing.assert_close(model.generate(cold), expected)
        scores = model.full_sort_predict({model.USER_ID: users}).view(len(users), -1)
        user_e = model.backbone.user_embedding(users)
        torch.testing.assert_close(scores[:, cold], user_e @ expected.T)
        torch.testing.assert_close(scores[:, warm], user_e @ model.backbone.item_embedding(warm).T)
        again = model.full_sort_predict({model.USER_ID: users}).view(len(users), -1)
    torch.testing.assert_close(again, scores)


def test_warm_up_moves_few_shot_items_toward_their_support_users(tmp_path):
    model, _ = build(tmp_path, shots=3, warmup_steps=5, warmup_learning_rate=0.5)
    model.eval()
    few_shot = torch.nonzero((model.item_count > 0) & (model.item_count <= 3)).view(-1)
    assert len(few_shot)
    with torch.no_grad():
        generated = model.generate(few_shot)
        warmed = model.item_representation(few_shot)
        torch.testing.assert_close(warmed, model.warm_up(few_shot, generated))
        assert not torch.allclose(warmed, generated)
        users = model.support[few_shot, :3]  # each new item's 3 support users (training buyers)
        assert (users > 0).all()
        user_e = model.backbone.user_embedding(users)
        before = (user_e * generated.unsqueeze(1)).sum(-1).mean()
        after = (user_e * warmed.unsqueeze(1)).sum(-1).mean()
        assert after > before
        model.warmup_steps = 0
        torch.testing.assert_close(model.item_representation(few_shot), generated)


def test_zero_shot_items_skip_the_warm_up(tmp_path):
    model, _ = build(tmp_path, shots=0, warmup_steps=5, warmup_learning_rate=0.5)
    model.eval()
    cold = torch.nonzero(model.item_count[1:] == 0).view(-1) + 1
    with torch.no_grad():
        torch.testing.assert_close(model.item_representation(cold), model.generate(cold))


def test_training_beats_untrained_on_planted_pattern(tmp_path):
    name, data_path = planted_split(tmp_path, shots=0)
    untrained = train_and_test("CVAR", name, data_path, epochs=0, **BACKBONE)
    trained = train_and_test("CVAR", name, data_path, epochs=10, **BACKBONE)
    assert trained["ndcg@10"] > untrained["ndcg@10"]
