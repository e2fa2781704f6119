"""Items given as raw values (onboarding): read like the item table, and bad values named with the fix."""

from __future__ import annotations

import pytest
import torch
from recbole.data.interaction import Interaction
from recbole.utils import FeatureType

from recbole_fewshot.nn.content import ItemContentEncoder


class ItemTable:
    """The parts of a RecBole dataset the content encoder reads: two items of a float and a float_seq field."""

    iid_field = "item_id"
    field2type = {"item_id": FeatureType.TOKEN, "price": FeatureType.FLOAT, "title_emb": FeatureType.FLOAT_SEQ}

    def __init__(self):
        self.item_feat = Interaction({"item_id": torch.tensor([0, 1, 2]), "price": torch.tensor([0.0, 1.0, 3.0]),
                                      "title_emb": torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 2.0], [3.0, 1.0, 0.0]])})


@pytest.fixture
def encoder():
    return ItemContentEncoder(ItemTable(), embedding_size=4)


def test_raw_values_read_as_the_item_table(encoder):
    features = encoder.features_from_raw({}, [{"item_id": "new", "price": "3", "title_emb": "3 1 0"},
                                              {"price": float("nan")}, {}])
    assert features["price"][0].item() == 3.0 and features["price"][1:].isnan().all(), "missing: NaN"
    code = encoder.numeric["price"]
    mean_code = code(code.mean.view(1))
    assert torch.allclose(code(features["price"][1:]), mean_code.expand(2, -1)), "a missing number reads as the mean"
    assert features["title_emb"][0].tolist() == [3.0, 1.0, 0.0]
    assert torch.equal(features["title_emb"][2], encoder.mean_title_emb), "a missing vector reads as the mean"
    stored = encoder.encode_features(encoder.item_features(torch.tensor([2])))
    assert torch.allclose(encoder.encode_features(features)[0], stored[0]), "item 2's values, item 2's vector"


@pytest.mark.parametrize("row, message", [
    ({"prize": 3.0}, r"item features\[1\] has fields \['prize'\].*item fields: \['item_id', 'price', 'title_emb'\]"),
    ({"price": "cheap"}, r"item features\[1\]: 'price' must be numbers, got \['cheap'\]"),
    ({"title_emb": "1 x 2"}, r"item features\[1\]: 'title_emb' must be numbers"),
    ({"title_emb": [1.0, 2.0]}, r"item features\[1\]: 'title_emb' has 2 numbers, the dataset's items have 3"),
])
def test_bad_raw_values_name_the_item_and_field(encoder, row, message):
    with pytest.raises(ValueError, match=message):
        encoder.features_from_raw({}, [{"price": 1.0}, row])
