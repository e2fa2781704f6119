"""Turning a RecBole ``Config`` into a run on a few-shot split.

Two ways in, both handled while RecBole's ``Config`` is built:

* the dataset folder holds ``<name>.fewshot.json`` (a split written by ``recbole-fewshot split``): its
  settings (``benchmark_filename``, ``load_col``, field names, ``fewshot_candidates``, ``max_shots``)
  become defaults;
* the config has a ``fewshot:`` block on a source dataset: the split is materialised into a cache
  keyed by its parameters and the source checksum, and the run switches to it.

Whatever the user sets explicitly (config files, config_dict, command line) wins over the manifest.
"""

from __future__ import annotations

import fcntl
from contextlib import contextmanager
from pathlib import Path

from recbole_fewshot.data.split import (
    FewShotSplitError,
    SplitSpec,
    manifest_path,
    materialize,
    read_manifest,
    resolve_source,
)

CANDIDATE_MODES = ("new", "all")
DEFAULT_CACHE_DIR = "dataset/fewshot_cache"


@contextmanager
def _exclusive(lock_file: Path):
    """Serialise materialisation across processes (DDP ranks, parallel benchmark runs)."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def materialize_from_config(final: dict, dataset: str, explicit_data_path: str | None) -> tuple[str, str]:
    """Materialise the ``fewshot:`` block's split of ``dataset``; return ``(split name, data_path)``."""
    spec = SplitSpec.from_mapping(final["fewshot"])
    source = resolve_source(
        dataset,
        explicit_data_path,
        uid_field=final["USER_ID_FIELD"],
        iid_field=final["ITEM_ID_FIELD"],
        time_field=final.get("TIME_FIELD"),
    )
    out = Path(final.get("fewshot_cache_dir") or DEFAULT_CACHE_DIR)
    with _exclusive(out / f".{dataset}.lock"):
        name, _ = materialize(source, spec, out)
    return name, str(out)


def apply_fewshot_settings(config) -> None:
    """Point ``config`` (a RecBole Config being built) at its few-shot split, if it has one.

    Called before RecBole's ``_set_default_parameters`` joins ``data_path`` and the dataset name.
    """
    final, external = config.final_config_dict, config.external_config_dict
    if final.get("fewshot") is not None:
        explicit = external.get("data_path")
        config.dataset, final["data_path"] = materialize_from_config(final, config.dataset, explicit)

    path = manifest_path(Path(final["data_path"]) / config.dataset, config.dataset)
    if not path.is_file():
        if final.get("fewshot_candidates") is not None and "fewshot_candidates" in external:
            raise FewShotSplitError(
                f"fewshot_candidates is set but dataset {config.dataset!r} is not a few-shot split "
                f"(no {path}): add a fewshot: block, or run `recbole-fewshot split` first"
            )
        return
    manifest = read_manifest(path)
    defaults = {
        "benchmark_filename": ["train", "valid", "test"],
        "load_col": manifest["load_col"],
        "fewshot_candidates": "new",
        # Min-max scaling of inter float fields would span query rows; item content is scaled by the models.
        "normalize_all": False,
        # The models treat items with at most max_shots training interactions as new: follow the split.
        "max_shots": manifest["max_shots"],
        **{key: value for key, value in manifest["fields"].items() if value is not None},
    }
    for key, value in defaults.items():
        if key not in external:
            final[key] = value
    if final["fewshot_candidates"] not in CANDIDATE_MODES:
        raise FewShotSplitError(
            f"fewshot_candidates must be one of {CANDIDATE_MODES}, got {final['fewshot_candidates']!r}"
        )
    final["fewshot_manifest"] = str(path)
