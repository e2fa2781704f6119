"""The content pipeline shared by every content-based model of the package.

It turns every item feature RecBole loaded into one vector per item, keeping what the features say
and not who the item is:

* categorical fields (``token``, ``token_seq``: genres, title words): the sum of learned token
  vectors (``content_pooling: sum``, a multi-hot times a matrix; ``mean`` averages them). A token carried by fewer than ``content_min_items`` items reads as padding: a word found on
  one product only identifies it, and a model would memorise warm products through it instead of
  learning what their content shares with new ones;
* ordinal and numeric fields (``float``, and a ``token`` field whose values are numbers, such as a
  release year; a token that is no number, such as ``unknown``, reads as missing): the standardised value plus a thermometer code over the item table's quantiles
  (one indicator per threshold the value reaches). A value with few items behind it (the newest year)
  shares every threshold but its own with its neighbours, and an increment learned from few items
  stays small, so it reads like the values next to it instead of like an untrained token;
* ``float_seq`` (pretrained text embeddings): standardised per dimension and passed through.

A learned linear map per field, then one projection to ``embedding_size``, gives the item's vector.
``content_vectors`` gives the same features without learned weights (for training-free models).
Statistics come from the item table alone (item content, never interactions). With no item features
``has_content`` is False and the encoder returns zeros, so a model still runs (and knows that
content-only scores are hopeless). The pipeline's settings (``content_min_items``,
``content_thresholds``, ``content_pooling``) are read from the run's config, with the defaults below.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from logging import getLogger

import torch
import torch.nn.functional as F
from recbole.utils import FeatureType
from torch import nn

_SUPPORTED = (FeatureType.TOKEN, FeatureType.TOKEN_SEQ, FeatureType.FLOAT, FeatureType.FLOAT_SEQ)
# Chosen once for every model on ml-100k valid (K = 0; the token and threshold counts on seed 2020 as the
# best mean of ContentRidge and DeepMusic, the pooling on seeds 2020-2022; tools/content_grid.py,
# docs/content.md).
DEFAULTS = {"content_min_items": 10, "content_thresholds": 16, "content_pooling": "sum"}
POOLINGS = ("mean", "sum")
NUMERIC_SHARE = 0.9  # a token field is ordinal when at least this share of its items carry a number
Z_CLIP = 5.0  # standardised numbers are clipped to [-Z_CLIP, Z_CLIP] (outliers, such as a price of 10^5)


def content_fields(dataset, fields: Sequence[str] | None) -> list[str]:
    """The item fields to encode: ``fields`` if given (checked), else every supported item field but the id."""
    if dataset.item_feat is None:
        if fields:
            raise ValueError(f"item_content_fields={list(fields)} but the dataset loaded no item features: "
                             "add the fields to load_col: item")
        return []
    available = [f for f in dataset.item_feat.columns if f != dataset.iid_field and dataset.field2type[f] in _SUPPORTED]
    if fields is None:
        return available
    missing = [f for f in fields if f not in available]
    if missing:
        raise ValueError(f"item_content_fields {missing} are not loaded item features; available: {available}")
    return list(fields)


def pipeline_setting(dataset, key: str):
    """A content pipeline setting: the run's config value if set, else ``DEFAULTS[key]``."""
    config = getattr(dataset, "config", None)
    value = config[key] if config is not None and key in config else None
    return DEFAULTS[key] if value is None else value


def token_numbers(dataset, field: str) -> torch.Tensor | None:
    """The number each token id of a ``token`` field stands for (NaN for padding and for a token that is
    no number, such as ``unknown``), or None when the field's items are not mostly numbers (at least
    ``NUMERIC_SHARE`` of the items with a value): the field is then categorical."""
    tokens = getattr(dataset, "field2id_token", {}).get(field)
    if tokens is None or len(tokens) < 2:
        return None
    numbers = torch.tensor([_number_or_nan(token) for token in tokens], dtype=torch.float)
    numbers[0] = math.nan
    values = dataset.item_feat[field].long()
    with_value = values[values > 0]
    if not len(with_value) or (~torch.isnan(numbers[with_value])).float().mean() < NUMERIC_SHARE:
        return None
    return numbers


def _number_or_nan(token: str) -> float:
    try:
        return float(token)
    except ValueError:
        return math.nan


class TokenEmbedding(nn.Module):
    """A token embedding with a small random start that models' ``nn.Embedding`` initialisers leave alone.

    A token seen only on new items (a word that first appears with them) gets no gradient in training;
    starting small (std ``INIT_STD``) it stays nearly neutral. It does not start at exactly zero: an
    all-token item table would then give every item the same content vector, and a model whose first
    layer has a zero bias followed by a ReLU would never get a gradient. Row 0 (padding) is zero.
    """

    INIT_STD = 0.01

    def __init__(self, num_tokens: int, embedding_size: int):
        super().__init__()
        weight = torch.randn(num_tokens, embedding_size) * self.INIT_STD
        weight[0] = 0.0
        self.weight = nn.Parameter(weight)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return F.embedding(tokens, self.weight, padding_idx=0)


class NumericCode(nn.Module):
    """A number as ``[standardised value, 1[value >= t] for each threshold t]``; NaN reads as the mean.

    The thresholds are the item table's quantiles (distinct values only, at most ``count``), the
    statistics its mean and standard deviation; all are buffers, fixed at construction.
    """

    def __init__(self, values: torch.Tensor, count: int):
        super().__init__()
        known = values[~torch.isnan(values)]
        if not len(known):
            known = values.new_zeros(1)
        self.register_buffer("mean", known.mean())
        self.register_buffer("std", known.std().clamp_min(1e-6) if len(known) > 1 else known.new_ones(()))
        quantiles = torch.quantile(known.double(), torch.linspace(0, 1, count + 2, dtype=torch.double)[1:-1]).float()
        self.register_buffer("thresholds", torch.unique(quantiles))

    @property
    def width(self) -> int:
        return 1 + len(self.thresholds)

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        values = torch.where(torch.isnan(values), self.mean, values)
        standard = ((values - self.mean) / self.std).clamp(-Z_CLIP, Z_CLIP)
        return torch.cat([standard.unsqueeze(-1), (values.unsqueeze(-1) >= self.thresholds).float()], dim=-1)


class ItemContentEncoder(nn.Module):
    """Encodes items (by id, or by feature tensors for items added after training) from their content."""

    def __init__(self, dataset, embedding_size: int, fields: Sequence[str] | None = None, min_items: int | None = None,
                 log_fields: bool = True):
        super().__init__()
        min_items = pipeline_setting(dataset, "content_min_items") if min_items is None else min_items
        self.min_items = min_items
        if min_items < 1:
            raise ValueError(f"content_min_items must be at least 1 (1 keeps every token), got {min_items}")
        thresholds = pipeline_setting(dataset, "content_thresholds")
        if thresholds < 0:
            raise ValueError(f"content_thresholds must be at least 0 (0: the standardised number alone), got {thresholds}")
        self.pooling = pipeline_setting(dataset, "content_pooling")
        if self.pooling not in POOLINGS:
            raise ValueError(f"content_pooling must be one of {list(POOLINGS)}, got {self.pooling!r}")
        self.fields = content_fields(dataset, fields)
        # every field a raw item row may name (the id and the fields not encoded are accepted and ignored)
        self.item_fields = [] if dataset.item_feat is None else list(dataset.item_feat.columns)
        self.field_types = {f: dataset.field2type[f] for f in self.fields}
        self.ordinal_tokens = set()  # token fields read as numbers
        self.embedding_size = embedding_size
        self.encoders = nn.ModuleDict()
        self.numeric = nn.ModuleDict()
        for field in self.fields:
            values = dataset.item_feat[field]
            ftype = self.field_types[field]
            numbers = token_numbers(dataset, field) if ftype == FeatureType.TOKEN else None
            if numbers is not None:  # an ordinal token field (a year): read as the numbers it stands for
                self.ordinal_tokens.add(field)
                values = numbers[values.long()]
                ftype = FeatureType.FLOAT
            if ftype in (FeatureType.TOKEN, FeatureType.TOKEN_SEQ):
                self.encoders[field] = TokenEmbedding(dataset.num(field), embedding_size)
                tokens = values.long()
                kept = _tokens_on_enough_items(tokens, dataset.num(field), min_items)
                self.register_buffer(f"kept_{field}", kept, persistent=False)  # derived from the item table
                # a kept token's column in the field's code (1, 2, ... in token order); padding and rare tokens: 0
                self.register_buffer(f"column_{field}", torch.cumsum(kept, 0) * kept, persistent=False)
                self.register_buffer(f"feature_{field}", self._without_rare_tokens(field, tokens))
            elif ftype == FeatureType.FLOAT:
                values = values.float()
                self.numeric[field] = NumericCode(_real_items(values), thresholds)
                self.register_buffer(f"feature_{field}", values)
                self.encoders[field] = nn.Linear(self.numeric[field].width, embedding_size)
            else:
                values = values.float()
                reference = _real_items(values)
                self.register_buffer(f"mean_{field}", reference.mean(0))
                self.register_buffer(f"std_{field}", reference.std(0).clamp_min(1e-6))
                self.register_buffer(f"feature_{field}", values)
                self.encoders[field] = nn.Linear(values.shape[-1], embedding_size)
        width = max(len(self.fields), 1) * embedding_size
        self.projection = nn.Linear(width, embedding_size)
        if log_fields:
            getLogger().info(self.describe())

    def describe(self) -> str:
        """One line naming the item fields read and how each is coded (for the run's log)."""
        if not self.fields:
            return "content encoder: no item fields (content-only scores are chance)"
        kinds = []
        for field in self.fields:
            if field in self.numeric:
                kind = "number" if field not in self.ordinal_tokens else "number read from tokens"
            elif self.field_types[field] == FeatureType.FLOAT_SEQ:
                kind = "vector"
            else:
                kind = f"tokens on >= {self.min_items} items, {self.pooling}"
            kinds.append(f"{field} ({kind})")
        return "content encoder reads item fields: " + ", ".join(kinds)

    def _without_rare_tokens(self, field: str, tokens: torch.Tensor) -> torch.Tensor:
        """``tokens`` of ``field`` with those on fewer than ``min_items`` items replaced by padding."""
        return tokens * getattr(self, f"kept_{field}")[tokens]

    def _pooled(self, summed: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """A token list's pooled value from its sum and its token count: the mean, or the sum itself."""
        return summed / counts.clamp_min(1.0) if self.pooling == "mean" else summed

    @property
    def has_content(self) -> bool:
        return bool(self.fields)

    def item_features(self, items: torch.Tensor) -> dict[str, torch.Tensor]:
        """The stored feature tensors of ``items`` (ids)."""
        return {field: getattr(self, f"feature_{field}")[items] for field in self.fields}

    def field_codes(self, features: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Each field's fixed code (before any learned weight): for a categorical field the pooled
        one-hot of its kept tokens (their multi-hot, or its mean; a column per kept token), for a number its ``NumericCode``, for a vector its standardised
        value."""
        codes = {}
        for field in self.fields:
            value = features[field]
            if field in self.numeric:
                codes[field] = self.numeric[field](value)
            elif self.field_types[field] in (FeatureType.TOKEN, FeatureType.TOKEN_SEQ):
                columns = getattr(self, f"column_{field}")
                tokens = columns[value if value.dim() == 2 else value.unsqueeze(-1)]
                hot = torch.zeros(len(tokens), int(columns.max()) + 1, device=tokens.device)
                hot.scatter_add_(1, tokens, torch.ones_like(tokens, dtype=hot.dtype))
                hot[:, 0] = 0.0
                codes[field] = self._pooled(hot, hot.sum(1, keepdim=True))
            else:
                codes[field] = (value - getattr(self, f"mean_{field}")) / getattr(self, f"std_{field}")
        return codes

    def content_vectors(self, items: torch.Tensor) -> torch.Tensor:
        """Training-free content vectors of ``items`` (ids), ``[len(items), D]``: each field's fixed code
        scaled to unit length, concatenated, so every field weighs the same in a cosine."""
        return self.content_codes(self.item_features(items), rows=len(items))

    def content_codes(self, features: Mapping[str, torch.Tensor], rows: int | None = None) -> torch.Tensor:
        """``content_vectors`` of feature tensors laid out like ``item_features`` (items given as raw values)."""
        codes = self.field_codes(features)
        if not codes:
            return self.projection.weight.new_zeros(rows or 0, 0)
        return torch.cat([F.normalize(code, dim=-1) for code in codes.values()], dim=-1)

    def encode_features(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Encode feature tensors laid out like ``item_features`` (one row per item)."""
        parts = []
        for field in self.fields:
            value, ftype = features[field], self.field_types[field]
            if field in self.numeric:
                parts.append(self.encoders[field](self.numeric[field](value)))
            elif ftype == FeatureType.TOKEN:
                parts.append(self.encoders[field](value))
            elif ftype == FeatureType.TOKEN_SEQ:
                mask = (value > 0).unsqueeze(-1).float()
                summed = (self.encoders[field](value) * mask).sum(-2)
                parts.append(self._pooled(summed, mask.sum(-2)))
            else:
                scaled = (value - getattr(self, f"mean_{field}")) / getattr(self, f"std_{field}")
                parts.append(self.encoders[field](scaled))
        if not parts:
            any_value = next(iter(features.values()), None)
            rows = 0 if any_value is None else any_value.shape[0]
            return self.projection.weight.new_zeros(rows, self.embedding_size)
        return self.projection(torch.cat(parts, dim=-1))

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        """Content embeddings of ``items`` (ids), shape ``[*items.shape, embedding_size]``; each distinct
        item is encoded once (a batch repeats its popular items many times)."""
        if not self.has_content:
            return self.projection.weight.new_zeros(*items.shape, self.embedding_size)
        unique, inverse = torch.unique(items.reshape(-1), return_inverse=True)
        return self.encode_features(self.item_features(unique))[inverse].view(*items.shape, self.embedding_size)

    def features_from_raw(self, field2token_id: Mapping[str, Mapping[str, int]],
                          rows: Sequence[Mapping[str, object]]) -> dict[str, torch.Tensor]:
        """Feature tensors for items given as raw values (tokens as in the atomic file); unknown tokens pad,
        a missing field (or NaN number) reads as padding (tokens) or the item table's mean (numbers).

        ``field2token_id`` is the training dataset's mapping of the same name. A field the dataset's
        items do not have, or a number that is not one, raises a ValueError naming the item and field.
        """
        item_fields = set(self.item_fields)
        for index, row in enumerate(rows):
            unknown = sorted(set(row) - item_fields)
            if unknown:
                raise ValueError(f"item features[{index}] has fields {unknown} that the dataset's items do not "
                                 f"have; item fields: {self.item_fields}")
        device = self.projection.weight.device
        features = {}
        for field in self.fields:
            ftype, token_id = self.field_types[field], field2token_id.get(field, {})
            width = getattr(self, f"feature_{field}").shape[-1]
            values = [row.get(field) for row in rows]
            if field in self.ordinal_tokens:  # as in the item table, a token that is no number is missing
                column = [math.nan if _missing(value) else _number_or_nan(str(value)) for value in values]
            elif field in self.numeric:
                column = [math.nan if _missing(value) else _numbers(field, index, [value])[0]
                          for index, value in enumerate(values)]
            elif ftype == FeatureType.TOKEN:
                column = [token_id.get(str(value), 0) if value is not None else 0 for value in values]
            elif ftype == FeatureType.TOKEN_SEQ:
                column = [([token_id.get(str(t), 0) for t in (value.split() if isinstance(value, str) else list(value or []))]
                           + [0] * width)[:width] for value in values]
            else:
                column = []
                for value in values:
                    vector = _numbers(field, len(column), value.split() if isinstance(value, str) else value or [])
                    if vector and len(vector) != width:
                        raise ValueError(f"item features[{len(column)}]: {field!r} has {len(vector)} numbers, the "
                                         f"dataset's items have {width} (embed new items with the same model)")
                    column.append(vector if vector else getattr(self, f"mean_{field}").tolist())
            if field in self.numeric:
                features[field] = torch.tensor(column, dtype=torch.float, device=device)
            elif ftype in (FeatureType.TOKEN, FeatureType.TOKEN_SEQ):
                tokens = torch.tensor(column, dtype=torch.long, device=device)
                features[field] = self._without_rare_tokens(field, tokens)
            else:
                features[field] = torch.tensor(column, dtype=torch.float, device=device)
        return features


def _missing(value) -> bool:
    """A raw value that reads as missing: None, NaN or a blank string."""
    return value is None or (isinstance(value, float) and math.isnan(value)) or (isinstance(value, str) and not value.strip())


def _real_items(values: torch.Tensor) -> torch.Tensor:
    """``values`` without row 0, RecBole's padding item (its zeros would bias the statistics)."""
    return values[1:] if len(values) > 1 else values


def _numbers(field: str, index: int, values) -> list[float]:
    """``values`` as floats, or a ValueError naming item ``index`` and ``field``."""
    try:
        return [float(v) for v in values]
    except (TypeError, ValueError):
        raise ValueError(f"item features[{index}]: {field!r} must be numbers, got {values!r}") from None


def _tokens_on_enough_items(values: torch.Tensor, num_tokens: int, min_items: int) -> torch.Tensor:
    """Per token id, whether at least ``min_items`` items carry it (``values``: one row of token ids per
    item, or one id per item); the padding id 0 is never kept."""
    kept = torch.ones(num_tokens, dtype=torch.long)
    if min_items > 1:
        rows = values if values.dim() == 2 else values.unsqueeze(1)
        pairs = torch.unique(torch.arange(len(rows)).unsqueeze(1) * num_tokens + rows)  # distinct (item, token)
        kept = (torch.bincount(pairs % num_tokens, minlength=num_tokens) >= min_items).long()
    kept[0] = 0
    return kept
