"""The benchmark's cells: model labels (models and variants), their settings and each cell's config."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

PROPERTIES = Path(__file__).parent.parent / "properties"
BENCHMARK_CONFIG_DIR = PROPERTIES / "benchmark"  # settings.yaml: every cell's; <Model>.yaml: a model's in the benchmark
VARIANT_DIR = PROPERTIES / "variants"  # <Label>.yaml: a model and the settings that make the variant
BASELINES = ["Random", "Pop", "ItemKNN", "BPR", "NeuMF", "LightGCN", "MultiVAE", "ENMF"]
PEERS = ["DropoutNet", "Heater", "MetaEmb", "MWUF", "LWA", "NLBA", "DeepMusic", "CLCRec", "CVAR", "ALDI", "GAR"]
FLOORS = ["ContentProfile", "ContentKNN", "ContentRidge"]
DEFAULT_MODELS = BASELINES + FLOORS + PEERS + ["FewShotRec-GRU", "FewShotRec-CNN"]
# The main job (`make run`): a few models, K = 0 and 3, one seed, short training.
QUICK_MODELS = ["Random", "Pop", "BPR", "ContentRidge", "DeepMusic", "FewShotRec-GRU", "FewShotRec-CNN"]
QUICK_OVERRIDES = {"epochs": 10, "stopping_step": 3}  # a warm backbone still trains to its early stop
OUT_PATH_KEYS = ("data_path", "checkpoint_dir", "log_root", "backbone_cache_dir")  # set from ``out`` by cell_config


@dataclass(frozen=True)
class Cell:
    """One benchmark run: a model label (a model name or a variant) on the split of (shots, seed)."""

    model: str
    shots: int
    seed: int


def variant_spec(label: str) -> tuple[str, dict] | None:
    """The RecBole model name and settings of a variant in ``properties/variants`` (FewShotRec-CNN), or None."""
    variant = VARIANT_DIR / f"{label}.yaml"
    if not variant.is_file():
        return None
    config = yaml.safe_load(variant.read_text(encoding="utf-8")) or {}
    return config.pop("model"), config


def model_spec(label: str) -> tuple[str, dict]:
    """The RecBole model name and config of a label: a model, or a variant in ``properties/variants``."""
    variant = variant_spec(label)
    if variant is not None:
        return variant
    model_file = BENCHMARK_CONFIG_DIR / f"{label}.yaml"
    config = (yaml.safe_load(model_file.read_text(encoding="utf-8")) if model_file.is_file() else None) or {}
    config.pop("search_space", None)  # the tuner's, not RecBole's
    return label, config


def list_models() -> list[str]:
    """Every built-in and plugin model and every benchmark variant."""
    from recbole_fewshot import registry

    variants = sorted(p.stem for p in VARIANT_DIR.glob("*.yaml"))
    return sorted(registry.plugin_models()) + variants + list(registry.builtin_models())


def benchmark_settings() -> dict:
    """Every benchmark cell's settings (``properties/benchmark/settings.yaml``)."""
    return yaml.safe_load((BENCHMARK_CONFIG_DIR / "settings.yaml").read_text(encoding="utf-8"))


def cell_config(cell: Cell, split_name: str, split_path: Path, candidates: str, base: dict, out: Path,
                tuned: dict | None = None) -> tuple[str, dict]:
    """The model name and the full config_dict of a cell: the benchmark's settings, the model's, its
    ``tuned`` settings (chosen on valid by ``tune``), then ``base`` (the user's)."""
    model, model_config = model_spec(cell.model)
    config = {
        **benchmark_settings(),
        **model_config,
        **(tuned or {}),
        **base,
        "seed": cell.seed,
        "data_path": str(split_path),
        "fewshot_candidates": candidates,
        # one folder per cell: RecBole names a checkpoint <model>-<local time to the second>.pth, so cells
        # of one model (two variants, two seeds) started in the same second by --jobs would share a file
        "checkpoint_dir": str(out / "saved" / f"{cell.model}-k{cell.shots}-s{cell.seed}-{candidates}"),
        "log_root": str(out / "log"),
    }
    from recbole_fewshot.registry import has_backbone

    if has_backbone(model):  # one backbone per split, seed and settings, shared by the models of a benchmark
        config.setdefault("backbone_cache_dir", str(out / "backbones"))
    return model, config
