"""ALDI: a frozen teacher, three active aligning losses, teacher weights, and training on a planted pattern."""

from __future__ import annotations

import torch
from conftest import build_pipeline, build_trainer
from planted import planted_split, train_and_test

from recbole_fewshot.checkpoint import load_checkpoint
from recbole_fewshot.model.aldi import teacher_weights
from recbole_fewshot.nn.interactions import TrainingInteractions

FAST_BACKBONE = {"backbone_epochs": 10, "backbone_learning_rate": 0.01}


def _aldi(planted, workdir, **overrides):
    name, data_path = planted
    config, _, train_data, valid_data, _ = build_pipeline("ALDI", name, data_path, workdir, **{**FAST_BACKBONE, **overrides})
    trainer = build_trainer(config, train_data)
    return trainer, train_data, valid_data


def _batch(model, train_data):
    interaction = next(iter(train_data)).to(model.device)
    keep = model.item_count[interaction[model.NEG_ITEM_ID]] > 0
    return (interaction[model.USER_ID][keep], interaction[model.ITEM_ID][keep], interaction[model.NEG_ITEM_ID][keep])


def test_teacher_is_frozen_and_unchanged_by_a_training_step(planted_k2, in_tmp):
    trainer, train_data, _ = _aldi(planted_k2, in_tmp)
    model = trainer.model
    trainer.prepare_backbone(train_data)
    assert not any(p.requires_grad for p in model.backbone.parameters())
    teacher_before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    student_before = model.item_student[0].weight.detach().clone()

    model.train()
    trainer.optimizer.zero_grad()
    model.calculate_loss(next(iter(train_data)).to(model.device)).backward()
    trainer.optimizer.step()

    assert all(p.grad is None for p in model.backbone.parameters())
    for key, value in model.backbone.state_dict().items():
        assert torch.equal(value, teacher_before[key]), key
    assert not torch.equal(model.item_student[0].weight, student_before)


def test_each_aligning_loss_is_nonzero_and_reaches_the_student(planted_k2, in_tmp):
    trainer, train_data, _ = _aldi(planted_k2, in_tmp)
    model = trainer.model
    trainer.prepare_backbone(train_data)
    model.train()
    terms = model.loss_terms(*_batch(model, train_data))
    student = [p for p in list(model.item_student.parameters()) + list(model.content.parameters()) if p.requires_grad]
    for name in ("rating", "ranking", "identification"):
        assert terms[name].item() > 0, name
        grads = torch.autograd.grad(terms[name], student, retain_graph=True, allow_unused=True)
        assert sum(float(g.norm()) for g in grads if g is not None) > 0, name
    user_grads = torch.autograd.grad(terms["rating"] + terms["ranking"], list(model.user_student.parameters()),
                                     retain_graph=True)
    assert sum(float(g.norm()) for g in user_grads) > 0


def test_teacher_weights_follow_interaction_frequency(planted_k2, in_tmp):
    trainer, train_data, _ = _aldi(planted_k2, in_tmp)
    model = trainer.model
    train = TrainingInteractions(train_data._dataset)
    weights = teacher_weights(train, cap=4.0)
    assert torch.allclose(model.teacher_weight, weights)
    assert torch.all(weights[train.item_count == 0] == 0)
    assert weights.max() <= torch.tanh(torch.tensor(4.0)) + 1e-6 and weights.min() >= 0
    # an item with fewer buyers (here the K=2 support of new items) is a weaker teacher than a popular one
    assert weights[(train.item_count > 0) & (train.item_count <= 2)].mean() < weights[train.item_count > 20].mean()

    # the weights scale the two cross-entropies: zero weights switch them off, not the other terms
    trainer.prepare_backbone(train_data)
    model.teacher_weight.zero_()
    terms = model.loss_terms(*_batch(model, train_data))
    assert terms["ranking"].item() == 0 and terms["identification"].item() == 0
    assert terms["rating"].item() > 0 and terms["supervised"].item() > 0


def test_cold_items_are_scored_by_the_student_and_warm_items_by_the_teacher(planted_k2, in_tmp):
    trainer, train_data, _ = _aldi(planted_k2, in_tmp)
    model = trainer.model.eval()
    items = torch.arange(model.n_items)
    cold = model.is_cold(items)
    assert cold.any() and (~cold[1:]).any()
    users = torch.arange(1, 6)
    interaction = {model.USER_ID: users}
    before = model.full_sort_predict(interaction).view(len(users), -1)
    with torch.no_grad():
        expected = model.student_users(users) @ model.student_items(items).T
    assert torch.allclose(before[:, cold], expected[:, cold], atol=1e-5)

    with torch.no_grad():
        model.backbone.item_embedding.weight.add_(1.0)
    model.eval()  # invalidates the cached tables
    after = model.full_sort_predict(interaction).view(len(users), -1)
    assert torch.allclose(after[:, cold], before[:, cold])
    assert not torch.allclose(after[:, ~cold], before[:, ~cold])


def test_training_beats_the_untrained_model_on_a_planted_pattern(tmp_path, in_tmp):
    name, data_path = planted_split(tmp_path, shots=0)
    untrained = train_and_test("ALDI", name, data_path, epochs=0, **FAST_BACKBONE)
    trained = train_and_test("ALDI", name, data_path, epochs=5, **FAST_BACKBONE)
    assert trained["ndcg@10"] > untrained["ndcg@10"] + 0.05, (trained, untrained)


def test_a_recbole_bpr_checkpoint_is_the_teacher(tmp_path, in_tmp):
    from recbole.quick_start import run_recbole

    name, data_path = planted_split(tmp_path, shots=0)
    saved = tmp_path / "saved"
    run_recbole(model="BPR", dataset=name, config_dict={
        "data_path": str(data_path), "checkpoint_dir": str(saved), "epochs": 1, "embedding_size": 16,
        "train_batch_size": 256, "show_progress": False, "state": "ERROR", "topk": [10], "valid_metric": "NDCG@10",
    })
    (checkpoint,) = saved.glob("BPR-*.pth")
    bpr = load_checkpoint(str(checkpoint), map_location="cpu")["state_dict"]

    trainer, train_data, valid_data = _aldi((name, data_path), in_tmp, pretrained_backbone=str(checkpoint),
                                            backbone_epochs=50)
    trainer.fit(train_data, valid_data, saved=False)
    backbone = trainer.model.backbone
    assert torch.equal(backbone.user_embedding.weight.cpu(), bpr["user_embedding.weight"])
    assert torch.equal(backbone.item_embedding.weight.cpu(), bpr["item_embedding.weight"])
    assert not any(p.requires_grad for p in backbone.parameters())
