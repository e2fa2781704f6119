"""DeepMusic: MSE regression of content onto frozen warm factors; cold items use the predictions."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from planted import FAST_CONFIG, planted_split, train_and_test
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.quick_start import run_recbole
from recbole.utils import get_model, get_trainer, init_seed

from recbole_fewshot.checkpoint import load_checkpoint

BACKBONE = {"backbone_epochs": 20, "backbone_learning_rate": 0.01}


def build(tmp_path: Path, **overrides):
    name, data_path = planted_split(tmp_path, shots=0)
    config = Config(model="DeepMusic", dataset=name, config_dict={
        **FAST_CONFIG, "data_path": str(data_path), "checkpoint_dir": str(tmp_path / "saved"), **overrides})
    init_seed(config["seed"], config["reproducibility"])
    train_data, _, _ = data_preparation(config, create_dataset(config))
    return get_model("DeepMusic")(config, train_data._dataset).to(config["device"]), train_data, config


def test_loss_is_mse_onto_frozen_backbone_factors(tmp_path):
    # token fields only: every content vector starts at zero (zero-initialised token embeddings)
    model, train_data, _ = build(tmp_path, dropout_prob=0.0, item_content_fields=["genre", "tags"])
    batch = next(iter(train_data)).to(model.device)
    items = batch[model.ITEM_ID]
    warm = items[model.item_count[items] > model.max_shots]
    assert len(warm) > 0

    loss = model.calculate_loss(batch)
    expected = F.mse_loss(model.predicted_factors(warm), model.backbone.item_embedding.weight[warm])
    torch.testing.assert_close(loss, expected)

    loss.backward()
    for parameter in model.backbone.parameters():
        assert parameter.grad is None or not parameter.grad.any()
    assert model.regressor[-1].weight.grad.abs().sum() > 0
    assert model.content.encoders["genre"].weight.grad.abs().sum() > 0  # reaches the token embeddings


def test_cold_items_are_scored_with_predicted_factors(tmp_path):
    model, _, _ = build(tmp_path)
    model.eval()
    cold = torch.nonzero(model.item_count[1:] == 0).view(-1) + 1
    warm = torch.nonzero(model.item_count > model.max_shots).view(-1)
    assert len(cold) and len(warm)
    users = torch.tensor([1, 2, 3], device=model.device)
    with torch.no_grad():
        scores = model.full_sort_predict({model.USER_ID: users}).view(len(users), -1)
        user_e = model.backbone.user_embedding(users)
        torch.testing.assert_close(scores[:, cold], user_e @ model.predicted_factors(cold).T)
        torch.testing.assert_close(scores[:, warm], user_e @ model.backbone.item_embedding(warm).T)
        model.regressor[-1].bias.add_(1.0)  # the regressor changes: a new evaluation must see it
        model.train()
        model.eval()
        rescored = model.full_sort_predict({model.USER_ID: users}).view(len(users), -1)
    assert not torch.allclose(rescored[:, cold], scores[:, cold])
    torch.testing.assert_close(rescored[:, warm], scores[:, warm])


def test_training_beats_untrained_on_planted_pattern(tmp_path):
    name, data_path = planted_split(tmp_path, shots=0)
    untrained = train_and_test("DeepMusic", name, data_path, epochs=0, **BACKBONE)
    trained = train_and_test("DeepMusic", name, data_path, epochs=5, **BACKBONE)
    assert trained["ndcg@10"] > untrained["ndcg@10"]


def test_pretrained_bpr_checkpoint_is_loaded_and_frozen(tmp_path):
    name, data_path = planted_split(tmp_path, shots=0)
    saved = tmp_path / "bpr"
    run_recbole(model="BPR", dataset=name, config_dict={
        "data_path": str(data_path), "checkpoint_dir": str(saved), "epochs": 1, "embedding_size": 16,
        "state": "ERROR", "show_progress": False, "topk": [10], "valid_metric": "NDCG@10"})
    (checkpoint,) = saved.glob("BPR-*.pth")
    state = load_checkpoint(checkpoint, map_location="cpu")["state_dict"]

    config = Config(model="DeepMusic", dataset=name, config_dict={
        **FAST_CONFIG, "data_path": str(data_path), "checkpoint_dir": str(tmp_path / "saved"),
        "epochs": 2, "pretrained_backbone": str(checkpoint), "backbone_epochs": 50})
    init_seed(config["seed"], config["reproducibility"])
    train_data, valid_data, _ = data_preparation(config, create_dataset(config))
    model = get_model("DeepMusic")(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], "DeepMusic")(config, model)
    trainer.fit(train_data, valid_data, saved=False, show_progress=False)

    for name_ in ("user_embedding.weight", "item_embedding.weight"):
        loaded = model.backbone.state_dict()[name_].cpu()
        torch.testing.assert_close(loaded, state[name_].cpu())
    assert not any(p.requires_grad for p in model.backbone.parameters())

