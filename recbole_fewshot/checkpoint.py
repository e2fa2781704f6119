"""Loading RecBole checkpoints safely on any torch release.

RecBole 1.2.1 saves ``{'config': Config, 'state_dict': ..., ...}`` with pickle protocol 4. torch >= 2.6
loads with ``weights_only=True`` by default, whose unpickler rejects both the protocol-4 FRAME opcode
and the ``Config`` global, so RecBole's own reload fails. Turning the check off would let a crafted
``.pth`` run arbitrary code. Instead this module unpickles with Python's standard unpickler (which
reads protocol 4) restricted to an allow-list of the globals a RecBole checkpoint holds: torch's
tensor rebuilders, numpy scalars and arrays, scipy sparse matrices, RecBole's ``Config`` and enums, and model classes of
RecBole and this plugin. Anything else (``os.system``, ``builtins.eval``, ...) is refused with
:class:`UnsafeCheckpointError` before it is called.
"""

from __future__ import annotations

import io
import os
import pickle
import types
from typing import Any

import torch

_ALLOWED: set[tuple[str, str]] = {
    ("collections", "OrderedDict"),
    ("collections", "defaultdict"),
    ("collections", "Counter"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "slice"),
    ("builtins", "range"),
    ("builtins", "complex"),
    ("_codecs", "encode"),
    ("torch", "Size"),
    ("torch", "device"),
    ("torch._tensor", "_rebuild_from_type_v2"),
    ("torch.nn.parameter", "Parameter"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("recbole.config.configurator", "Config"),
    ("yaml.loader", "FullLoader"),
}
_ALLOWED_MODULES_ANY_NAME = {"recbole.utils.enum_type", "numpy.dtypes"}
_MODEL_MODULE_PREFIXES = ("recbole.model.", "recbole_fewshot.model.")
_extra_allowed: set[tuple[str, str]] = set()
_torch_load = torch.load  # bound before compat routes RecBole's torch.load calls here


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint references a global that no RecBole checkpoint holds; nothing of it was run."""


def allow_checkpoint_globals(*qualified_names: str) -> None:
    """Trust more globals (``'package.module.Class'``) in checkpoints, for models that save custom types."""
    for qualified in qualified_names:
        module, _, name = qualified.rpartition(".")
        if not module:
            raise ValueError(f"expected 'module.name', got {qualified!r}")
        _extra_allowed.add((module, name))


def _is_allowed(module: str, name: str) -> bool:
    if (module, name) in _ALLOWED or (module, name) in _extra_allowed:
        return True
    if module in _ALLOWED_MODULES_ANY_NAME:
        return True
    if module == "torch":
        return isinstance(getattr(torch, name, None), torch.dtype) or name.endswith("Storage")
    if module == "torch._utils":
        return name.startswith("_rebuild_")
    if module.startswith("scipy.sparse."):  # ItemKNN and others keep sparse matrices as other_parameter
        return name.endswith(("_matrix", "_array"))
    return module.startswith(_MODEL_MODULE_PREFIXES)


class RestrictedUnpickler(pickle.Unpickler):
    """The standard unpickler, resolving only allow-listed globals."""

    def find_class(self, module: str, name: str) -> Any:
        if not _is_allowed(module, name):
            raise UnsafeCheckpointError(
                f"the checkpoint references {module}.{name}, which a RecBole checkpoint never holds; "
                "loading it could run arbitrary code, so it was refused. Load only checkpoints you trust; "
                "if this type is genuinely yours, trust it with "
                f"recbole_fewshot.checkpoint.allow_checkpoint_globals('{module}.{name}')"
            )
        found = super().find_class(module, name)
        if module.startswith(_MODEL_MODULE_PREFIXES):
            from recbole.model.abstract_recommender import AbstractRecommender

            if not (isinstance(found, type) and issubclass(found, AbstractRecommender)):
                raise UnsafeCheckpointError(f"the checkpoint references {module}.{name}, which is not a model class")
        return found


_restricted_pickle = types.SimpleNamespace(
    __name__="recbole_fewshot.checkpoint.restricted_pickle",
    Unpickler=RestrictedUnpickler,
    load=lambda file, **kwargs: RestrictedUnpickler(file, **kwargs).load(),
    loads=lambda data, **kwargs: RestrictedUnpickler(io.BytesIO(data), **kwargs).load(),
)


def load_checkpoint(path: str | os.PathLike, map_location: Any = None, **_ignored: Any) -> dict:
    """Load a RecBole checkpoint through the allow-listing unpickler (a drop-in for ``torch.load``)."""
    try:
        return _torch_load(path, map_location=map_location, pickle_module=_restricted_pickle, weights_only=False)
    except UnsafeCheckpointError as error:
        raise UnsafeCheckpointError(f"refusing to load {path}: {error}") from None
