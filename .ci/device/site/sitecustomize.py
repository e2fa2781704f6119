"""Device machine only (PYTHONPATH set by .ci/device/check): the image has numpy 2, and RecBole 1.2.1's
``Config.compatibility_settings`` (recbole/config/configurator.py) reads ``np.float_``, ``np.complex_``
and ``np.unicode_``, which numpy 2 removed. They are set back to what they named in numpy 1."""

import numpy as np

for alias, target in (("float_", "float64"), ("complex_", "complex128"), ("unicode_", "str_")):
    if not hasattr(np, alias):
        setattr(np, alias, getattr(np, target))
