"""How a patch is installed: once, on every owner, recorded in ``PATCHED`` with the original it replaced."""

from __future__ import annotations

import functools
from collections.abc import Callable

PATCHED: dict[str, Callable] = {}  # patch name -> original callable, for tests and for idempotence


def replace(name: str, owners: list, attribute: str, make: Callable[[Callable], Callable]) -> None:
    """Replace ``attribute`` on every owner (modules that imported it by name) with ``make(original)``.

    Replacements are marked, so a second copy of this module (a reload) keeps the installed patch
    and records its original from ``__wrapped__`` instead of wrapping a wrapper.
    """
    if name in PATCHED:
        return
    current = getattr(owners[0], attribute)
    if getattr(current, "__recbole_fewshot_patch__", None) == name:
        PATCHED[name] = current.__wrapped__
        return
    original = current
    replacement = functools.wraps(original)(make(original))
    replacement.__recbole_fewshot_patch__ = name
    for owner in owners:
        setattr(owner, attribute, replacement)
    PATCHED[name] = original
