r"""ContentRidge: a floor: a closed-form ridge regression from content onto warm backbone item vectors.

DeepMusic's objective (van den Oord et al., NeurIPS 2013: regress item content onto the item factors of
a warm latent-factor model, score cold items with the prediction) in closed form with a linear map.
A warm BPR backbone (:class:`~recbole_fewshot.nn.backbone.BPRBackbone`, trained or loaded by
``BackboneFloorTrainer``) gives user vectors ``x_u`` and item vectors ``y_j``. Over the warm items (more
than ``max_shots`` training interactions), each once, with ``X`` their training-free content vectors
(``ItemContentEncoder.content_vectors``) plus a bias column and ``Y`` their backbone vectors,

    W = (X^T X + ridge_lambda I)^{-1} X^T Y     (every column penalised, the bias too),

solved in float64. A cold item (at most ``max_shots`` training interactions) gets ``[content_i, 1] W``;
a warm item keeps ``y_i``; an item is scored ``x_u . v_i``. A cold item's support interactions only
enter the backbone, as any training interaction does. Without item features every cold item gets the
bias row, the warm items' mean vector shrunk by ``ridge_lambda``.
"""

from __future__ import annotations

import torch

from recbole_fewshot.nn.floors import BackboneFloor, item_content_vectors, ridge_map, with_bias


class ContentRidge(BackboneFloor):
    r"""Cold items: a ridge regression (closed form) from content onto the warm items' backbone vectors."""

    NO_CONTENT_EFFECT = "every cold item gets the same vector"

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.ridge_lambda = float(config["ridge_lambda"])
        if self.ridge_lambda <= 0:
            raise ValueError(f"ContentRidge: ridge_lambda must be positive, got {self.ridge_lambda}")
        content = item_content_vectors(dataset, config["item_content_fields"])
        self.warn_without_content(content.shape[1] > 0)
        self.register_buffer("item_content", content, persistent=False)

    def cold_vectors(self) -> torch.Tensor:
        weight = ridge_map(self.item_content[self.warm_items], self.backbone.item_embedding.weight[self.warm_items],
                           self.ridge_lambda)
        return with_bias(self.item_content[self.cold_items].double()) @ weight
