"""Every patch the plugin applies to RecBole 1.2.1 (and one to SciPy), by kind:

- :mod:`~recbole_fewshot.compat.hooks`, the plugin's own hooks: ``unknown_model_error``,
  ``plugin_model_defaults``, ``fewshot_config``, ``plugin_dataloaders``, ``training_popularity_only``;
- :mod:`~recbole_fewshot.compat.upstream`, fixes of RecBole bugs and of its breakage under newer torch
  and SciPy: ``safe_checkpoint_load``, ``scipy_dok_update``, ``config_unpickle``,
  ``collector_non_tensor_data``, ``ensure_dir_race``;
- :mod:`~recbole_fewshot.compat.distributed`, fixes of RecBole's distributed (DDP) mode: ``ddp_backend``,
  ``ddp_cpu_module``, ``ddp_shared_checkpoint``, ``ddp_exact_metrics``.

Each patch is a public function of no arguments named after it, whose docstring cites the RecBole line
it works around, and is tested in ``tests/test_compat.py``. ``apply()`` runs ``PATCHES`` in order and is
idempotent. Nothing else in the package patches anything. Other DDP pieces are the plugin's own code:
:func:`recbole_fewshot.distributed.run_distributed` (workers that import the plugin),
``WarmBackboneTrainer`` (backbone gradients averaged over the processes, the model wrapped again once the
backbone is frozen) and ``UserGroupedBatches`` (each process takes its share of the users).
"""

from __future__ import annotations

from collections.abc import Callable

from recbole_fewshot.compat import distributed, hooks, upstream
from recbole_fewshot.compat._patching import PATCHED
from recbole_fewshot.compat.distributed import merge_shards, unpad_sampler

__all__ = ["PATCHED", "PATCHES", "apply", "merge_shards", "unpad_sampler"]

PATCHES: tuple[Callable[[], None], ...] = (  # in the order they are applied
    hooks.unknown_model_error,
    hooks.plugin_model_defaults,
    hooks.fewshot_config,
    upstream.safe_checkpoint_load,
    upstream.scipy_dok_update,
    upstream.config_unpickle,
    hooks.plugin_dataloaders,
    upstream.collector_non_tensor_data,
    hooks.training_popularity_only,
    upstream.ensure_dir_race,
    distributed.ddp_backend,
    distributed.ddp_cpu_module,
    distributed.ddp_shared_checkpoint,
    distributed.ddp_exact_metrics,
)


def apply() -> None:
    """Apply every patch once."""
    for patch in PATCHES:
        patch()
