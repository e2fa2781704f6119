"""Stand-in for ray on the device machine only (PYTHONPATH set by .ci/device/check).

RecBole 1.2.1's ``recbole/quick_start/quick_start.py`` imports ``ray.tune`` at import time, for its
hyper-parameter search alone, which nothing here uses; ray 2.6.3 (RecBole's pin) has no wheel for the
device image's Python 3.12.
"""
