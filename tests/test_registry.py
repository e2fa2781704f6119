"""`import recbole_fewshot` makes plugin models, trainers and defaults visible to RecBole's own lookups."""

from __future__ import annotations

import importlib
import importlib.util
import multiprocessing
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import recbole
import recbole.trainer
import yaml
from recbole.trainer import Trainer
from recbole.utils import ModelType

import recbole_fewshot
from recbole_fewshot import compat, registry

PLUGIN_MODELS = sorted(registry.plugin_models())
SUBPACKAGE = {ModelType.GENERAL: "general_recommender", ModelType.CONTEXT: "context_aware_recommender",
              ModelType.SEQUENTIAL: "sequential_recommender", ModelType.KNOWLEDGE: "knowledge_aware_recommender",
              ModelType.TRADITIONAL: "general_recommender"}


def test_there_are_plugin_models_and_builtins():
    assert PLUGIN_MODELS, "recbole_fewshot.model defines no model"
    builtins = registry.builtin_models()
    for name in ("BPR", "Pop", "ItemKNN", "NeuMF", "LightGCN", "MultiVAE", "ENMF", "Random", "SASRec", "DeepFM"):
        assert name in builtins
    assert not set(PLUGIN_MODELS) & set(builtins)


@pytest.mark.parametrize("name", PLUGIN_MODELS)
def test_get_model_finds_plugin_models(name):
    from recbole.utils import get_model

    model_class = registry.plugin_models()[name]
    assert model_class.__name__ == name
    assert model_class.__module__ == f"recbole_fewshot.model.{name.lower()}"
    module_path = f"recbole.model.{SUBPACKAGE[model_class.type]}.{name.lower()}"
    assert importlib.util.find_spec(module_path, "recbole.utils") is not None
    assert get_model(name) is model_class


@pytest.mark.parametrize("name", PLUGIN_MODELS)
def test_get_trainer_finds_plugin_trainers(name):
    from recbole.utils import get_trainer

    model_class = registry.plugin_models()[name]
    plugin_trainer = registry.plugin_trainer(name)
    found = get_trainer(model_class.type, name)
    if plugin_trainer is not None:
        assert getattr(recbole.trainer, f"{name}Trainer") is plugin_trainer
        assert found is plugin_trainer
    else:
        assert issubclass(found, Trainer)


def test_builtin_models_still_resolve():
    from recbole.model.general_recommender import BPR
    from recbole.utils import get_model, get_trainer

    assert get_model("BPR") is BPR
    assert get_trainer(ModelType.GENERAL, "BPR") is Trainer


@pytest.mark.parametrize("name", ["NoSuchModel", "bpr", "lightgbm", ""])
def test_unknown_model_is_a_clear_error(name):
    from recbole.utils import get_model

    with pytest.raises(ValueError) as caught:
        get_model(name)
    message = str(caught.value)
    assert f"[{name}]" in message
    assert "lightgbm" not in message.replace("[lightgbm]", "")
    assert "BPR" in message and "LightGCN" in message
    for plugin in PLUGIN_MODELS:
        assert plugin in message


@pytest.mark.usefixtures("in_tmp")
def test_unknown_model_through_config_and_run_recbole():
    from recbole.config import Config
    from recbole.quick_start import run_recbole

    with pytest.raises(ValueError, match="Built-in models: .*BPR"):
        Config(model="NoSuchModel", dataset="ml-100k")
    with pytest.raises(ValueError, match="Plugin models: "):
        run_recbole(model="NoSuchModel", dataset="ml-100k")


# --- model defaults: overall.yaml < model yaml < dataset yaml < files < config_dict < command line ----

SAMPLE_YAML = Path(recbole.__file__).parent / "properties" / "dataset" / "sample.yaml"
PLUGIN_YAML = {
    "learning_rate": 0.123,        # overall.yaml 0.001: the model yaml wins
    "train_batch_size": 77,        # overall.yaml 2048
    "normalize_all": False,        # ml-100k.yaml True: the dataset yaml wins
    "seq_separator": "|",          # ml-100k.yaml " ": the dataset yaml wins
    "plugin_only_key": "model",    # set nowhere else
    "eval_step": 2,                # config file 3
    "stopping_step": 2,            # config file 3, config_dict 4
    "epochs": 2,                   # config file 3, config_dict 4, command line 5
}


@pytest.fixture
def plugin_defaults(tmp_path, monkeypatch):
    """The first plugin model, with a model yaml written for the precedence test."""
    name = PLUGIN_MODELS[0]
    properties = tmp_path / "properties"
    properties.mkdir()
    (properties / f"{name}.yaml").write_text(yaml.safe_dump(PLUGIN_YAML))
    monkeypatch.setattr(registry, "PROPERTIES_DIR", properties)
    return name


@pytest.mark.usefixtures("in_tmp")
def test_model_defaults_precedence(tmp_path, plugin_defaults, monkeypatch):
    from recbole.config import Config

    config_file = tmp_path / "user.yaml"
    config_file.write_text(yaml.safe_dump({"eval_step": 3, "stopping_step": 3, "epochs": 3}))
    monkeypatch.setattr(sys, "argv", [sys.argv[0], "--epochs=5"])
    config = Config(model=plugin_defaults, dataset="ml-100k", config_file_list=[str(config_file)],
                    config_dict={"stopping_step": 4, "epochs": 4})
    assert config["learning_rate"] == 0.123
    assert config["train_batch_size"] == 77
    assert config["plugin_only_key"] == "model"
    assert config["normalize_all"] is True
    assert config["seq_separator"] == " "
    assert config["eval_step"] == 3
    assert config["stopping_step"] == 4
    assert config["epochs"] == 5


@pytest.mark.usefixtures("in_tmp")
def test_model_defaults_without_other_inputs(plugin_defaults):
    from recbole.config import Config

    config = Config(model=plugin_defaults, dataset="no-yaml-dataset")  # no dataset yaml either
    dataset_defaults = set(yaml.safe_load(SAMPLE_YAML.read_text()))  # loaded after the model yaml
    assert {"normalize_all", "seq_separator"} <= dataset_defaults
    for key, value in PLUGIN_YAML.items():
        if key not in dataset_defaults:
            assert config[key] == value, key


@pytest.mark.usefixtures("in_tmp")
def test_builtin_models_do_not_get_plugin_defaults(plugin_defaults):
    from recbole.config import Config

    config = Config(model="BPR", dataset="no-yaml-dataset")
    assert config["plugin_only_key"] is None
    assert config["learning_rate"] == 0.001


@pytest.mark.usefixtures("in_tmp")
@pytest.mark.parametrize("name", PLUGIN_MODELS)
def test_shipped_model_yaml_is_loaded(name):
    from recbole.config import Config

    path = registry.model_config_file(name)
    if path is None:
        pytest.skip(f"{name} ships no properties/model/{name}.yaml")
    shipped = yaml.safe_load(path.read_text()) or {}
    config = Config(model=name, dataset="no-yaml-dataset")
    for key, value in shipped.items():
        assert config[key] == value, key


def test_model_config_file_is_none_for_builtins():
    assert registry.model_config_file("BPR") is None
    assert registry.model_config_file("NoSuchModel") is None


# --- importing twice, spawned workers ------------------------------------------------------------

def compat_layers(function) -> int:
    """How many of compat's wrappers are stacked in ``function`` (following functools.wraps' __wrapped__)."""
    layers = 0
    while function is not None:
        code = getattr(function, "__code__", None)
        layers += code is not None and Path(code.co_filename).parent == Path(compat.__file__).parent
        function = getattr(function, "__wrapped__", None)
    return layers


def installed_patches() -> dict:
    import recbole.config.configurator
    import recbole.data.utils
    import recbole.evaluator.collector
    import recbole.quick_start.quick_start
    import recbole.sampler.sampler
    import recbole.utils

    return {
        "unknown_model_error": recbole.utils.get_model,
        "plugin_model_defaults": recbole.config.configurator.Config._update_internal_config_dict,
        "fewshot_config": recbole.config.configurator.Config._set_default_parameters,
        "safe_checkpoint_load:evaluate": Trainer.evaluate,
        "safe_checkpoint_load:resume": Trainer.resume_checkpoint,
        "safe_checkpoint_load:quick_start": recbole.quick_start.quick_start.load_data_and_model,
        "plugin_dataloaders": recbole.data.utils.get_dataloader,
        "training_popularity_only": recbole.sampler.sampler.Sampler._get_candidates_list,
        "training_popularity_only:repeatable": recbole.sampler.sampler.RepeatableSampler._get_candidates_list,
        "collector_non_tensor_data": recbole.evaluator.collector.Collector.get_data_struct,
    }


def _assert_patched_once():
    for name, function in installed_patches().items():
        assert compat_layers(function) == 1, name
        assert compat_layers(compat.PATCHED[name]) == 0, name


def test_importing_twice_is_harmless():
    before_patched = dict(compat.PATCHED)
    before = installed_patches()
    importlib.reload(recbole_fewshot)
    compat.apply()
    registry.register_all()
    import recbole_fewshot as again  # noqa: F401

    assert compat.PATCHED == before_patched
    assert installed_patches() == before
    _assert_patched_once()
    from recbole.utils import get_model

    for name in PLUGIN_MODELS:
        assert get_model(name) is registry.plugin_models()[name]


RELOAD_SCRIPT = textwrap.dedent("""
    import importlib, recbole.utils, recbole.config.configurator as c
    import recbole_fewshot, recbole_fewshot.compat as compat
    first = recbole.utils.get_model, c.Config._update_internal_config_dict
    importlib.reload(compat)          # re-executing the patch module must not wrap the wrappers
    compat.apply()
    importlib.reload(recbole_fewshot)
    second = recbole.utils.get_model, c.Config._update_internal_config_dict
    assert second == first, "patched twice"
    print("ok")
""")


def test_reexecuting_compat_does_not_double_wrap():
    done = subprocess.run([sys.executable, "-c", RELOAD_SCRIPT], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr[-2000:]


SPAWN_PROBE = textwrap.dedent("""
    import sys


    def resolve(names):
        # Runs in a spawned process that has not imported recbole_fewshot: importing any piece
        # of it must register the plugin.
        already = "recbole_fewshot" in sys.modules
        from recbole_fewshot.data.split import SplitSpec  # noqa: F401  (anything from the package)
        from recbole.utils import get_model

        return already, [get_model(name).__name__ for name in names]
""")


def test_spawned_workers_register_plugin_models(tmp_path, monkeypatch):
    (tmp_path / "spawn_probe.py").write_text(SPAWN_PROBE)
    monkeypatch.syspath_prepend(str(tmp_path))  # a spawned child starts with the parent's sys.path
    import spawn_probe

    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        already, found = pool.apply(spawn_probe.resolve, (PLUGIN_MODELS,))
    assert not already, "the worker imported recbole_fewshot before the task asked for it"
    assert found == PLUGIN_MODELS
