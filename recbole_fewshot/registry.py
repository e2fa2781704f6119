"""Registering plugin models with RecBole 1.2.1, which has no entry-point registry.

RecBole resolves models and trainers by name, and both are served here:

* models: ``get_model`` calls ``importlib.util.find_spec('recbole.model.<type>_recommender.<lowercase>')``,
  which consults ``sys.modules`` first, so every plugin model module is aliased there;
* trainers: ``get_trainer`` looks up the attribute ``recbole.trainer.<Model>Trainer``, which is set to the
  model's trainer (``plugin_trainer``).

Model defaults come from ``recbole_fewshot/properties/model/<Model>.yaml`` (see ``compat``), after
``recbole_fewshot/properties/backbone.yaml`` for the models trained after a warm backbone.
A model is any module under ``recbole_fewshot/model/`` (but ``abstract_recommender``, the models' bases)
that defines a class of the same name (lowercased).
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import sys
from functools import lru_cache
from pathlib import Path

import recbole
import recbole.trainer
from recbole.utils import ModelType

MODEL_PACKAGE = "recbole_fewshot.model"
BASES_MODULE = "abstract_recommender"
PROPERTIES_DIR = Path(__file__).parent / "properties" / "model"
BACKBONE_CONFIG_FILE = Path(__file__).parent / "properties" / "backbone.yaml"
_RECBOLE_SUBPACKAGE = {
    ModelType.GENERAL: "general_recommender",
    ModelType.CONTEXT: "context_aware_recommender",
    ModelType.SEQUENTIAL: "sequential_recommender",
    ModelType.KNOWLEDGE: "knowledge_aware_recommender",
    ModelType.TRADITIONAL: "general_recommender",
}


@lru_cache(maxsize=None)
def plugin_models() -> dict[str, type]:
    """Every plugin model class by name."""
    package = importlib.import_module(MODEL_PACKAGE)
    models = {}
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("_") or info.name == BASES_MODULE:
            continue
        module = importlib.import_module(f"{MODEL_PACKAGE}.{info.name}")
        classes = [obj for key, obj in vars(module).items() if key.lower() == info.name and isinstance(obj, type)]
        if len(classes) != 1:
            raise ImportError(f"{module.__name__} must define exactly one model class named like the file")
        models[classes[0].__name__] = classes[0]
    return models


@lru_cache(maxsize=None)
def builtin_models() -> tuple[str, ...]:
    """Names of RecBole's own models, read from its source files (importing some needs lightgbm/xgboost)."""
    names = []
    for path in sorted((Path(recbole.__file__).parent / "model").glob("*_recommender/*.py")):
        if path.stem == "__init__":
            continue
        for match in re.finditer(r"^class (\w+)\(", path.read_text(encoding="utf-8"), re.MULTILINE):
            if match.group(1).lower() == path.stem:
                names.append(match.group(1))
    return tuple(sorted(set(names)))


def model_config_file(model: str) -> Path | None:
    """The plugin's default config for ``model``, or None for a built-in model."""
    path = PROPERTIES_DIR / f"{model}.yaml"
    return path if model in plugin_models() and path.is_file() else None


def plugin_trainer(model: str) -> type | None:
    """The trainer of plugin model ``model``: its class's ``trainer_class``; None for a model without one,
    which RecBole's own choice by model type trains."""
    return getattr(plugin_models()[model], "trainer_class", None)


def has_backbone(model: str) -> bool:
    """Whether ``model`` is a plugin model trained after a warm backbone (its trainer a ``WarmBackboneTrainer``)."""
    if model not in plugin_models():
        return False
    from recbole_fewshot.trainer.backbone import WarmBackboneTrainer

    trainer = plugin_trainer(model)
    return isinstance(trainer, type) and issubclass(trainer, WarmBackboneTrainer)


def model_config_files(model: str) -> list[Path]:
    """Every default config of ``model`` in loading order: the shared backbone settings
    (``BACKBONE_CONFIG_FILE``) for a model with a warm backbone, then the model's own file."""
    files = [BACKBONE_CONFIG_FILE] if has_backbone(model) else []
    own = model_config_file(model)
    return files + ([own] if own is not None else [])


def register_all() -> None:
    """Make every plugin model and trainer visible to RecBole's lookups; idempotent."""
    clashes = set(plugin_models()) & set(builtin_models())
    if clashes:
        raise ImportError(f"plugin models {sorted(clashes)} shadow RecBole built-ins; rename them")
    for name, model_class in plugin_models().items():
        alias = f"recbole.model.{_RECBOLE_SUBPACKAGE[model_class.type]}.{name.lower()}"
        sys.modules[alias] = sys.modules[model_class.__module__]
        trainer = plugin_trainer(name)
        if trainer is not None:
            setattr(recbole.trainer, f"{name}Trainer", trainer)
