"""FewShotRec: transfer from the warm backbone, the closed-form cold-start module, episodes, onboarding."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from planted import FAST_CONFIG, planted_split, train_and_test
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.data.interaction import Interaction
from recbole.utils import get_model, get_trainer, init_seed

FAST = {"backbone_epochs": 40, "backbone_train_batch_size": 256}


def build(tmp_path, shots=3, train_epochs=None, **overrides):
    """FewShotRec on a planted split; with ``train_epochs`` its trainer fits it (backbone first)."""
    name, data_path = planted_split(tmp_path, shots=shots)
    config = Config(model="FewShotRec", dataset=name, config_dict={
        **FAST_CONFIG, **FAST, "data_path": str(data_path), "checkpoint_dir": str(tmp_path / "saved"),
        "epochs": train_epochs or 1, **overrides})
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train, valid, test = data_preparation(config, dataset)
    model = get_model("FewShotRec")(config, train._dataset)
    trainer = get_trainer(config["MODEL_TYPE"], "FewShotRec")(config, model)
    if train_epochs is not None:
        trainer.fit(train, valid, saved=False, show_progress=False)
    else:
        trainer.prepare_backbone(train)
    return model, train._dataset, trainer, (train, valid, test)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return build(tmp_path_factory.mktemp("fewshotrec"), train_epochs=3)


def test_a_frozen_backbone_reaches_the_model_unchanged(tmp_path):
    model, train, trainer, (train_data, valid, _) = build(tmp_path)
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    assert model.backbone_best_epoch is not None, "the backbone trained to its early stop"
    trainer.fit(train_data, valid, saved=False, show_progress=False)
    for key, value in model.backbone.state_dict().items():
        assert torch.equal(value, before[key]), f"{key} moved while frozen"
    model.eval()
    warm = torch.nonzero(model.item_count > model.max_shots).squeeze(1)
    d = model.embedding_size
    assert torch.equal(model.score_tables()[1][warm, :d], model.backbone.item_embedding.weight[warm]), "warm items: backbone"


def test_before_training_users_are_the_backbone_users_and_new_items_the_ridge_map(tmp_path):
    model, train, *_ = build(tmp_path, shots=0)
    model.eval()
    users = torch.arange(1, model.n_users)
    d = model.embedding_size
    assert torch.allclose(model.score_tables()[0][users][:, :d], model.backbone.user_embedding(users), atol=1e-6)
    assert torch.all(model.score_tables()[0][users][:, d:2 * d] == 0), "the correction starts at zero"
    warm = torch.nonzero(model.item_count > model.max_shots).squeeze(1).numpy()
    inputs = np.c_[model.codes.numpy().astype(np.float64), np.ones(model.n_items)]
    targets = model.backbone.item_embedding.weight.detach().numpy().astype(np.float64)
    weight = np.linalg.solve(inputs[warm].T @ inputs[warm] + model.ridge_lambda * np.eye(inputs.shape[1]),
                             inputs[warm].T @ targets[warm])
    new = torch.nonzero(model.item_count == 0).squeeze(1)
    new = new[new > 0]
    assert len(new)
    expected = torch.from_numpy(inputs[new.numpy()] @ weight).float()
    assert torch.allclose(model.score_tables()[1][new, :d], expected, atol=1e-4), "K = 0: the closed-form content map"
    assert torch.allclose(model.score_tables()[1][new, d:], torch.zeros(len(new), d + 1), atol=1e-6), \
        "K = 0: nothing beyond the content for the correction to read"


def test_the_support_update_is_the_gaussian_posterior_mean(tmp_path):
    """Woodbury's K x K solve against the d x d posterior written out: (rho I + U^T U)^-1 (rho mu + U^T y)."""
    model, *_ = build(tmp_path)
    model.eval()
    items = torch.nonzero((model.item_count > 0) & (model.item_count <= model.max_shots)).squeeze(1)[:5]
    with torch.no_grad():
        torch.nn.init.normal_(model.trust.weight, std=0.1)
        got = model.score_tables()[1][items, : model.embedding_size].double()
        content = model.content(items)
        prior = model.content_prior(model.codes[items]).double()
        rho = (model.user_scale * torch.exp(model.log_trust + model.trust(content))).double().squeeze(1)
    for row, item in enumerate(items.tolist()):
        buyers = model.support[item, : model.support_len[item]]
        u = model.backbone.user_embedding.weight[buyers].detach().double()
        y = (model.target_scale * model.user_target[buyers] + model.target_shift).detach().double()
        d = u.shape[1]
        posterior = torch.linalg.solve(rho[row] * torch.eye(d, dtype=torch.float64) + u.T @ u, rho[row] * prior[row] + u.T @ y)
        assert torch.allclose(got[row], posterior, atol=1e-4), "two forms of one posterior, float32 against float64"


def test_the_user_correction_reads_only_what_buyers_say_beyond_the_content(tmp_path):
    """score = b_u . v + c_u . (v - prior) + affinity: an item without buyers is scored by the backbone user
    and the token affinity alone (at K = 0 the model is the ContentRidge floor plus the affinity, whatever the
    correction learned); an item with buyers is moved by the correction through its departure from the
    content map."""
    model, *_ = build(tmp_path, shots=0)
    model.eval()
    torch.manual_seed(0)
    with torch.no_grad():
        torch.nn.init.normal_(model.correction.weight, std=0.5)
    model.train(), model.eval()  # drop the cached tables
    users = torch.arange(1, model.n_users)
    scores = model.full_sort_predict(Interaction({"user_id": users})).view(len(users), -1)
    new = torch.nonzero(model.item_count == 0).squeeze(1)
    new = new[new > 0]
    with torch.no_grad():
        prior = model.content_prior(model.codes[new])
        corrected = model.score_tables()[0][users]
    d = model.embedding_size
    assert corrected[:, d:].abs().sum() > 0, "the correction is not zero"
    affinity = model.affinity_weight[0] * model.profiles.profiles(users) @ model.profiles.item_vectors[new].T
    assert torch.allclose(scores[:, new], model.backbone.user_embedding(users) @ prior.T + affinity, atol=1e-5)
    warm = torch.nonzero(model.item_count > model.max_shots).squeeze(1)
    backbone_only = model.backbone.user_embedding(users) @ model.backbone.item_embedding(warm).T
    assert not torch.allclose(scores[:, warm], backbone_only, atol=1e-3), "warm items: the correction reads their residual"


def test_buyers_of_one_taste_raise_a_new_item_for_that_taste_as_k_grows(trained):
    model, train, *_ = trained
    model.eval()
    genre_of = {token: i for i, token in enumerate(train.field2id_token["genre"])}
    item_genre = train.item_feat["genre"]
    history = model.history
    taste = torch.stack([(item_genre[history] == genre_of[f"g{g}"]).sum(1) for g in range(3)], 1).argmax(1)
    users = train.field2id_token["user_id"]
    group_a = [users[u] for u in range(1, model.n_users) if taste[u] == 0][:30]
    group_b = [users[u] for u in range(1, model.n_users) if taste[u] == 1]
    features = {"genre": "g0", "tags": "t0 t3 common", "price": 1.5}
    margins = []
    for k in (0, 1, 2, 3):
        onboarded = model.onboard([features], [group_b[:k]])
        scores = model.score_onboarded(group_b[30:60] + group_a, onboarded)[:, 0]
        margins.append(float(scores[:30].mean() - scores[30:].mean()))
    assert margins == sorted(margins) and margins[-1] > margins[0] + 1e-3, f"B minus A by K: {margins}"


def test_onboarding_matches_full_sort_for_an_item_of_the_catalogue(trained):
    model, train, *_ = trained
    model.eval()
    item = int(torch.nonzero((model.item_count > 0) & (model.item_count <= model.max_shots))[0])
    row = {field: _raw(train, field, item) for field in model.content.fields}
    length = int(model.support_len[item])
    buyers = [train.field2id_token["user_id"][u] for u in model.support[item, :length].tolist()]
    with torch.no_grad():
        model.pace_weight.fill_(-0.5)  # the pace counts, as after training
        model.affinity_weight.fill_(0.7)  # and so does the token affinity
    model.train(), model.eval()  # drop the cached tables
    times = (model.support_times[item, :length].double() + 1.7e9).tolist()  # any origin: only gaps count
    onboarded = model.onboard([row], [buyers], [times])
    assert torch.allclose(onboarded.embedding[0], model.score_tables()[1][item], atol=1e-5)
    users = ["u1", "u2", "u3"]
    ids = torch.tensor([int(train.token2id("user_id", u)) for u in users])
    full_sort = model.full_sort_predict(Interaction({"user_id": ids})).view(len(users), -1)[:, item]
    assert torch.allclose(model.score_onboarded(users, onboarded)[:, 0], full_sort, atol=1e-5)


def test_the_affinity_weights_are_their_fit_never_below_zero(tmp_path, monkeypatch):
    model, *_ = build(tmp_path, shots=3)
    assert model.profiles.width > 0 and (model.affinity_weight > 0.5).all(), \
        "a planted user buys mostly items of their group's tags: every fitted weight is above 0"
    assert "affinity_weight" not in dict(model.named_parameters()), "the episodes do not move them"
    from recbole_fewshot.model import fewshotrec

    monkeypatch.setattr(fewshotrec, "fit_logistic_weight", lambda margin, gain: -1.0)
    model.fit_affinity_weight()
    assert torch.equal(model.affinity_weight, torch.zeros_like(model.affinity_weight))


def test_affinity_scale_multiplies_the_fitted_weights(tmp_path, monkeypatch):
    from recbole_fewshot.model import fewshotrec

    monkeypatch.setattr(fewshotrec, "fit_logistic_weight", lambda margin, gain: 0.8)
    model, *_ = build(tmp_path, shots=3, affinity_scale=2.5)
    assert torch.allclose(model.affinity_weight, torch.full_like(model.affinity_weight, 2.0))
    with pytest.raises(ValueError, match="affinity_scale"):
        build(tmp_path, shots=3, affinity_scale=-1.0)


def test_onboarding_names_support_users_it_does_not_know(trained, caplog):
    model, *_ = trained
    with caplog.at_level(logging.WARNING):
        model.onboard([{}], [["u1", "17850.0"]])
    assert "['17850.0']" in caplog.text
    with pytest.raises(ValueError, match=r"users \['nobody'\] are not user_id tokens"):
        model.score_onboarded(["u1", "nobody"], model.onboard([{}], [[]]))
    with pytest.raises(ValueError, match="support_times must give one time per support user"):
        model.onboard([{}], [["u1", "u2"]], [[0.0]])


def test_episode_supports_are_the_items_first_buyers_never_the_rows_user(tmp_path):
    model, *_ = build(tmp_path)
    torch.manual_seed(0)
    items = torch.nonzero(model.item_count > model.max_shots).squeeze(1).repeat(5)
    rows = torch.randint(0, 1000, (len(items),)) % model.item_count[items]
    users = model.item_users[model.item_ptr[items] + rows]  # each row's user bought its item
    shots = torch.randint(0, model.max_shots + 1, (len(items),))
    support, length, times = model.sample_support(items, users, shots)
    assert (length == shots).all(), "warm items have buyers enough"
    for row in range(len(items)):
        span = slice(model.item_ptr[items[row]], model.item_ptr[items[row] + 1])
        buyers, bought = model.item_users[span].tolist(), model.item_times[span].tolist()
        expected = [(b, t) for b, t in zip(buyers, bought) if b != users[row].item()][: shots[row]]
        assert support[row, : length[row]].tolist() == [b for b, _ in expected], "the first buyers, in order, less the row's user"
        assert times[row, : length[row]].tolist() == [t for _, t in expected], "and when they bought"
        assert (support[row, length[row]:] == 0).all() and (times[row, length[row]:] == 0).all()


def test_the_pace_weights_start_at_their_least_squares_fit_on_the_warm_items(tmp_path):
    model, *_ = build(tmp_path)
    warm = model.warm_items.numpy()
    with torch.no_grad():
        users = model.backbone.user_embedding.weight[torch.bincount(model.item_users, minlength=model.n_users) > 0]
        residual = ((model.backbone.item_embedding.weight[warm] - model.content_prior(model.codes[warm])) @ users.mean(0))
    residual = residual.double().numpy()
    times = model.support_times[warm].double().numpy()
    for size in range(2, model.max_shots + 1):
        pace = np.log1p((times[:, size - 1] - times[:, 0]) / (size - 1) / model.pace_scale.item())
        slope = np.polyfit(pace, residual, 1)[0]
        assert np.isclose(model.pace_weight[size].item(), slope, rtol=1e-3, atol=1e-5), size
    assert model.pace_weight[:2].abs().sum() == 0, "no pace below two buyers"


def test_an_item_whose_first_buyers_came_faster_ranks_higher_under_a_negative_pace_weight(tmp_path):
    """Of two items with the same content and buyers, the one whose buyers came within a shorter time
    scores higher when the weight is negative (as on data where faster first buyers mean more appeal).
    Below two buyers there is no pace."""
    model, train, *_ = build(tmp_path)
    model.eval()
    users = train.field2id_token["user_id"]
    buyers = [users[1], users[2], users[3]]
    with torch.no_grad():
        model.pace_weight.fill_(-1.0)
    fast, slow, single = model.onboard([{}, {}, {}], [buyers, buyers, buyers[:1]],
                                       [[0.0, 60.0, 120.0], [0.0, 6e5, 1.2e6], [0.0]]).embedding
    assert torch.allclose(fast[:-1], slow[:-1], atol=1e-6), "the same item vector"
    assert fast[-1] > slow[-1], "faster first buyers, higher pace score"
    assert single[-1] == 0, "one buyer has no pace"
    scores = model.score_onboarded(users[1:6], model.onboard([{}, {}], [buyers, buyers], [[0.0, 60.0, 120.0], [0.0, 6e5, 1.2e6]]))
    assert (scores[:, 0] > scores[:, 1]).all()


@pytest.mark.parametrize("encoder", ["gru", "cnn"])
@pytest.mark.parametrize("shots", [0, 3])
def test_training_beats_untrained(tmp_path, encoder, shots):
    name, data_path = planted_split(tmp_path, shots=shots)
    settings = {"behaviour_encoder": encoder, **FAST}
    untrained = train_and_test("FewShotRec", name, data_path, epochs=0, **settings)
    trained = train_and_test("FewShotRec", name, data_path, epochs=3, **settings)
    assert trained["ndcg@10"] > untrained["ndcg@10"] + 0.05


def test_fine_tuning_moves_the_backbone(tmp_path):
    model, *_ = build(tmp_path, train_epochs=1, freeze_backbone=False)
    assert model.backbone.user_embedding.weight.requires_grad
    frozen, *_ = build(tmp_path / "frozen", train_epochs=1)
    assert not torch.allclose(model.backbone.user_embedding.weight, frozen.backbone.user_embedding.weight)


@pytest.mark.parametrize("key, value", [
    ("behaviour_encoder", "lstm"), ("max_shots", -1), ("ridge_lambda", 0), ("dropout_prob", 1.0),
    ("freeze_backbone", "yes"), ("embedding_size", 2.5),
])
def test_a_setting_out_of_range_is_named_with_its_allowed_values(tmp_path, key, value):
    with pytest.raises(ValueError, match=f"FewShotRec: {key} must be"):
        build(tmp_path, **{key: value})


@pytest.mark.parametrize("removed", ["support_users", "buyer_overlap", "warm_epochs", "episode_negatives"])
def test_a_removed_setting_is_rejected_by_name(tmp_path, removed):
    with pytest.raises(ValueError, match=rf"settings \['{removed}'\] no longer exist"):
        build(tmp_path, **{removed: "history" if removed == "support_users" else 1})


def test_runs_without_item_features_and_says_so(tmp_path, caplog):
    name, data_path = planted_split(tmp_path, shots=3, with_features=False)
    with caplog.at_level(logging.WARNING):
        result = train_and_test("FewShotRec", name, data_path, epochs=1, **FAST)
    assert 0.0 <= result["ndcg@10"] <= 1.0
    assert any("no item features" in r.getMessage() for r in caplog.records)


def _raw(train, field: str, item: int):
    value = train.item_feat[field][item]
    tokens = train.field2id_token.get(field)
    if tokens is None:
        return value.item() if value.dim() == 0 else value.tolist()
    if value.dim() == 0:
        return tokens[int(value)]
    return " ".join(tokens[int(v)] for v in value if int(v) > 0)


@pytest.mark.parametrize("shots, freeze, max_shots, no_episode",
                         [(0, True, 10, True), (0, True, 40, True), (0, False, 10, False), (2, True, 10, False)])
def test_k0_on_a_frozen_backbone_runs_no_episode(tmp_path, shots, freeze, max_shots, no_episode):
    """At K = 0 with a frozen backbone new items are their content map whatever the episodes learn, so
    the transfer start is the model and no episode runs, even where old items with few buyers (here, at
    ``max_shots: 40``) are cold; with buyers, or a backbone to fine-tune, it runs its epochs."""
    model, _, trainer, (_, valid, _) = build(tmp_path, shots=shots, train_epochs=3, freeze_backbone=freeze,
                                             max_shots=max_shots)
    if max_shots == 40:
        assert ((model.item_count > 0) & (model.item_count <= model.max_shots)).any(), "cold old items with buyers"
    assert model.training_moves(valid.candidate_items) is not no_episode
    assert trainer.epochs == (0 if no_episode else 3)
    assert len(trainer.train_loss_dict) == trainer.epochs


def test_training_never_ends_below_the_transfer_start(tmp_path, monkeypatch):
    """Episodes that only hurt (here each epoch scrambles the user correction) leave the transfer start as
    the best epoch: the saved best model is the start, scored as the start was."""
    from recbole_fewshot.trainer import FewShotRecTrainer

    def scrambling_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        with torch.no_grad():
            torch.nn.init.normal_(self.model.correction.weight, std=50.0)
            torch.nn.init.normal_(self.model.correction.bias, std=50.0)
        self.model.drop_caches()
        return 0.0

    monkeypatch.setattr(FewShotRecTrainer, "_train_epoch", scrambling_epoch)
    model, _, trainer, (train_data, valid, _) = build(tmp_path, shots=2)
    start = trainer.evaluate(valid, load_best_model=False, show_progress=False)[trainer.valid_metric]
    best, _ = trainer.fit(train_data, valid, saved=True, show_progress=False)
    assert len(trainer.train_loss_dict) >= 1, "the episodes ran"
    assert best == pytest.approx(start, abs=1e-6), "the start stays the best"
    assert torch.load(trainer.saved_model_file, weights_only=False)["epoch"] == -1, "the start is the saved best model"
    assert trainer.evaluate(valid, load_best_model=True, show_progress=False)[trainer.valid_metric] == pytest.approx(start, abs=1e-6)


def test_support_times_are_when_the_first_buyers_bought(tmp_path):
    model, train, *_ = build(tmp_path)
    inter = train.inter_feat
    items, times = inter["item_id"].numpy(), inter["timestamp"].numpy().astype(np.float64)
    start = times.min()
    for item in torch.nonzero(model.item_count > 0).squeeze(1)[:20].tolist():
        length = int(model.support_len[item])
        expected = np.sort(times[items == item])[:length] - start
        assert np.allclose(model.support_times[item, :length].double().numpy(), expected, atol=1.0)
        assert (model.support_times[item, length:] == 0).all()
