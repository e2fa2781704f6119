"""recbole-fewshot: few-shot new-product recommendation for RecBole.

``import recbole_fewshot`` registers the plugin models with RecBole and applies the compatibility
patches listed in :mod:`recbole_fewshot.compat`; RecBole's own ``run_recbole`` then runs them.
"""

__version__ = "0.1.0"

import warnings

# ray, which RecBole imports, warns on import about an API only ray uses: nothing a user can act on.
warnings.filterwarnings("ignore", message="pkg_resources is deprecated as an API", category=UserWarning)

from recbole_fewshot import compat as _compat  # noqa: E402
from recbole_fewshot import registry as _registry  # noqa: E402

_compat.apply()
_registry.register_all()
