"""The content pipeline keeps what features say: ordinal values generalise, rare tokens are no fingerprints."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from recbole.data.interaction import Interaction
from recbole.utils import FeatureType

from recbole_fewshot.nn.content import DEFAULTS, ItemContentEncoder, token_numbers

# years 1990-1997 with six items each, then one item of 1998 (the newest launch); item 0 is padding
YEARS = [str(y) for y in range(1990, 1998) for _ in range(6)] + ["1998"]
UNKNOWN = 3  # item 3's year reads "unknown" (as in ml-100k), a missing number


class Catalogue:
    """The parts of a RecBole dataset the encoder reads: a year token field, title words and a text vector."""

    iid_field = "item_id"
    field2type = {"item_id": FeatureType.TOKEN, "year": FeatureType.TOKEN, "title": FeatureType.TOKEN_SEQ,
                  "text": FeatureType.FLOAT_SEQ}

    def __init__(self, config: dict | None = None):
        self.config = config or {}
        year_tokens = ["[PAD]"] + sorted(set(YEARS)) + ["unknown"]
        n = len(YEARS) + 1
        words = ["[PAD]", "common", "unique"]
        years = [year_tokens.index(y) for y in YEARS]
        years[UNKNOWN - 1] = len(year_tokens) - 1
        title = torch.zeros(n, 2, dtype=torch.long)
        title[1:, 0] = 1  # every item says "common"
        title[1, 1] = 2  # item 1 alone says "unique"
        self.field2id_token = {"year": year_tokens, "title": words}
        self.field2token_id = {field: {t: i for i, t in enumerate(tokens)} for field, tokens in self.field2id_token.items()}
        generator = torch.Generator().manual_seed(0)
        self.item_feat = Interaction({
            "item_id": torch.arange(n),
            "year": torch.tensor([0] + years),
            "title": title,
            "text": torch.randn(n, 3, generator=generator) * 4 + 2,
        })

    def num(self, field: str) -> int:
        return len(self.field2id_token[field])


def test_a_year_token_reads_as_a_number_with_a_thermometer_code():
    catalogue = Catalogue()
    numbers = token_numbers(catalogue, "year")
    assert numbers[1:-1].tolist() == [float(y) for y in range(1990, 1999)] and numbers[-1].isnan(), "unknown: missing"
    assert token_numbers(catalogue, "title") is None, "words are categorical"
    encoder = ItemContentEncoder(catalogue, 8, ["year"])
    assert "year" in encoder.numeric and encoder.feature_year[-1].item() == 1998.0
    code = encoder.numeric["year"](encoder.feature_year)
    known = torch.cat([encoder.feature_year[1:UNKNOWN], encoder.feature_year[UNKNOWN + 1:]])
    assert torch.allclose(code[UNKNOWN], encoder.numeric["year"](known.mean().view(1))[0]), "missing reads as the mean"
    raw = encoder.features_from_raw({}, [{"year": "1996"}, {"year": "unknown"}])["year"]
    assert raw[0].item() == 1996.0 and raw[1].isnan(), "raw rows read as the item table does"
    newest, before, oldest = code[-1], code[-2], code[1]
    assert (newest[1:] != before[1:]).sum() <= 1, "1998 shares every threshold but its own with 1997"
    assert (newest[1:] != oldest[1:]).sum() > (newest[1:] != before[1:]).sum()


def test_a_year_with_one_item_behind_it_is_predicted_like_its_neighbours():
    """Regress a smooth function of the year from the items of 1990-1997 only; the 1998 item, never
    trained on, must land next to 1997's target. (A learned token per year leaves 1998 at its
    untrained start, near the mean of all targets, far from 1997's.)"""
    torch.manual_seed(0)
    catalogue = Catalogue()
    encoder = ItemContentEncoder(catalogue, 8, ["year"])
    head = torch.nn.Linear(8, 1)
    years = torch.tensor([0.0] + [float(y) for y in YEARS])
    target = ((years - 1990) / 8).unsqueeze(1)  # 0 for 1990 ... 0.875 for 1997, 1.0 for 1998
    trained = torch.tensor([i for i in range(1, len(YEARS)) if i != UNKNOWN])  # every dated item but the 1998 one
    optimizer = torch.optim.Adam([*encoder.parameters(), *head.parameters()], lr=0.01)
    for _ in range(400):
        optimizer.zero_grad()
        F.mse_loss(head(encoder(trained)), target[trained]).backward()
        optimizer.step()
    with torch.no_grad():
        newest = head(encoder(torch.tensor([len(YEARS)]))).item()
        latest_trained = head(encoder(torch.tensor([len(YEARS) - 1]))).item()
    assert abs(latest_trained - 0.875) < 0.05, "the fit itself"
    assert abs(newest - 0.875) < 0.1, f"1998 predicted {newest:.3f}, 1997's target is 0.875"


def test_a_token_on_a_single_item_is_no_fingerprint():
    catalogue = Catalogue()
    assert DEFAULTS["content_min_items"] > 1
    encoder = ItemContentEncoder(catalogue, 8, ["title"])
    assert encoder.feature_title[1].tolist() == [1, 0], "the one-item word reads as padding"
    with torch.no_grad():
        vectors = encoder(torch.tensor([1, 2]))
    assert torch.allclose(vectors[0], vectors[1], atol=1e-6), "two items that differ by a one-item word look the same"
    every = ItemContentEncoder(Catalogue({"content_min_items": 1}), 8, ["title"])
    assert every.feature_title[1].tolist() == [1, 2], "the run's config can keep every token"


def test_text_vectors_pass_through_standardised():
    catalogue = Catalogue()
    encoder = ItemContentEncoder(catalogue, 8, ["text"])
    items = torch.arange(1, len(YEARS) + 1)
    raw = catalogue.item_feat["text"][items]
    standard = (raw - raw.mean(0)) / raw.std(0)
    assert torch.allclose(encoder.field_codes(encoder.item_features(items))["text"], standard, atol=1e-5)


def test_training_free_vectors_weigh_every_field_the_same():
    encoder = ItemContentEncoder(Catalogue({"content_min_items": 1}), 8)
    items = torch.arange(1, len(YEARS) + 1)
    vectors = encoder.content_vectors(items)
    widths = [encoder.numeric["year"].width, encoder.encoders["title"].weight.shape[0], 3]
    assert vectors.shape == (len(items), sum(widths))
    blocks = vectors.split(widths, dim=1)
    for block in blocks:
        assert torch.allclose(block.norm(dim=1), torch.ones(len(items)), atol=1e-5)
    title = blocks[1]
    assert torch.allclose(title[0, 1:], torch.tensor([0.5 ** 0.5, 0.5 ** 0.5]), atol=1e-6), "two words, half each"


def test_token_lists_pool_by_sum_by_default_and_by_mean_on_request():
    """An item's token list is the sum of its tokens' codes (a multi-hot, as the reference
    implementations feed it), so an item with two words carries both in full; ``mean`` averages them."""
    assert DEFAULTS["content_pooling"] == "sum"
    items = torch.tensor([1, 2])  # item 1 says "common unique", item 2 says "common"
    expected = {"sum": [[0.0, 1.0, 1.0], [0.0, 1.0, 0.0]], "mean": [[0.0, 0.5, 0.5], [0.0, 1.0, 0.0]]}
    for pooling, codes in expected.items():
        encoder = ItemContentEncoder(Catalogue({"content_min_items": 1, "content_pooling": pooling}), 8, ["title"])
        assert torch.allclose(encoder.field_codes(encoder.item_features(items))["title"], torch.tensor(codes))
        with torch.no_grad():
            words = encoder.encoders["title"].weight
            encoded = encoder.encode_features(encoder.item_features(items))
            pooled = torch.tensor(codes) @ words
        assert torch.allclose(encoded, encoder.projection(pooled), atol=1e-6)


def test_an_unknown_pooling_is_refused_by_name():
    with pytest.raises(ValueError, match="content_pooling must be one of"):
        ItemContentEncoder(Catalogue({"content_pooling": "max"}), 8, ["title"])


def test_the_log_names_the_fields_read_and_their_codes(caplog):
    with caplog.at_level("INFO"):
        ItemContentEncoder(Catalogue(), 8)
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("content encoder reads"))
    assert "year (number read from tokens)" in line and "text (vector)" in line
    assert f"title (tokens on >= {DEFAULTS['content_min_items']} items, sum)" in line
