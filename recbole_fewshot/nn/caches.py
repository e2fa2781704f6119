"""Values a model derives from its parameters and keeps between calls, dropped whenever they may be stale."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch

Value = TypeVar("Value")


class DerivedCaches:
    """Mixin (listed before the ``nn.Module`` base) for attributes named in a class's ``CACHED``, each
    holding values computed from parameters (an evaluation's item table, say) or ``None``.

    Every such attribute of the class and its bases is reset to ``None`` by ``train()``/``eval()``, which
    RecBole's trainer calls at the start of every epoch and every evaluation, and by ``load_state_dict``
    (new parameters), so a cache never outlives the parameters it was computed from. ``cached`` is the
    one way a model fills such an attribute.
    """

    CACHED: tuple[str, ...] = ()

    def cached(self, name: str, compute: Callable[[], Value], while_training: bool = False) -> Value:
        """The value of the attribute ``name`` (listed in ``CACHED``), computed by ``compute`` without
        gradients when it is ``None``. In training mode the parameters move, so ``compute`` runs on every
        call (with gradients) unless ``while_training``: a value of frozen parameters only, kept then too."""
        if self.training and not while_training:
            return compute()
        if getattr(self, name, None) is None:
            with torch.no_grad():
                setattr(self, name, compute())
        return getattr(self, name)

    def drop_caches(self) -> None:
        """Set every attribute named in ``CACHED`` by this class or a base to ``None``."""
        for klass in type(self).__mro__:
            for name in vars(klass).get("CACHED", ()):
                setattr(self, name, None)

    def train(self, mode: bool = True):
        self.drop_caches()
        return super().train(mode)

    def _load_from_state_dict(self, *args, **kwargs):
        self.drop_caches()
        super()._load_from_state_dict(*args, **kwargs)
