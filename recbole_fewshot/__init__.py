"""recbole-fewshot: few-shot new-product recommendation for RecBole.

``import recbole_fewshot`` registers the plugin models with RecBole and applies the compatibility
patches listed in :mod:`recbole_fewshot.compat`; RecBole's own ``run_recbole`` then runs them.
"""

__version__ = "0.1.0"

from recbole_fewshot import compat as _compat
from recbole_fewshot import registry as _registry

_compat.apply()
_registry.register_all()
