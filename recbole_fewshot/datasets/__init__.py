"""Converters from public raw data sets to RecBole atomic files.

``python -m recbole_fewshot.datasets NAME --raw FILE --out DIR`` writes ``DIR/NAME/NAME.inter`` (and
``.item``), ready for ``recbole-fewshot split --dataset NAME --data-path DIR``. Converters:

* ``online_retail``: the UCI Online Retail sheet (:mod:`recbole_fewshot.datasets.online_retail`).
"""

from __future__ import annotations

CONVERTERS = {
    "online_retail": "recbole_fewshot.datasets.online_retail",
}
