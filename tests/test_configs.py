"""The shipped configs/ files: each parses and sets only settings that RecBole, the few-shot split or
the model it is written for reads (a typo would otherwise be ignored silently)."""

from __future__ import annotations

from pathlib import Path

import pytest
import recbole
import yaml

from recbole_fewshot import registry

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
SPLIT_SETTINGS = {"fewshot", "fewshot_candidates", "fewshot_cache_dir"}


def recbole_settings() -> set[str]:
    properties = Path(recbole.__file__).parent / "properties"
    keys = set(yaml.safe_load((properties / "overall.yaml").read_text()))
    for path in (properties / "dataset").glob("*.yaml"):
        keys |= set(yaml.safe_load(path.read_text()) or {})
    return keys


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_config_sets_only_known_settings(path):
    settings = yaml.safe_load(path.read_text())
    assert isinstance(settings, dict) and settings
    model_settings = yaml.safe_load((registry.PROPERTIES_DIR / "FewShotRec.yaml").read_text())
    unknown = set(settings) - recbole_settings() - SPLIT_SETTINGS - set(model_settings)
    assert not unknown, f"{path.name}: {sorted(unknown)}"
