"""Reading and writing RecBole atomic files (``.inter``, ``.item``, ``.user``) without reformatting.

Values are kept as the exact strings of the source file, so a split writes back byte-identical
fields; only the row selection and order change. Writes go to a temporary file that is renamed
into place, so a crash never leaves a half-written file behind.
"""

from __future__ import annotations

import csv
import os
import tempfile
from pathlib import Path

import pandas as pd

FIELD_SEPARATOR = "\t"
_UMASK = os.umask(0)
os.umask(_UMASK)


def read_atomic(path: str | os.PathLike) -> tuple[pd.DataFrame, list[str]]:
    """Read an atomic file as strings.

    Returns the table with columns named by field (``user_id``) and the original header cells
    (``user_id:token``), in file order.
    """
    with open(path, encoding="utf-8") as handle:
        header = handle.readline().rstrip("\r\n").split(FIELD_SEPARATOR)
    for cell in header:
        if ":" not in cell:
            raise ValueError(
                f"{path}: header cell {cell!r} is not 'name:type'; atomic files need a typed header "
                "such as 'user_id:token\\titem_id:token\\ttimestamp:float'"
            )
    names = [cell.split(":", 1)[0] for cell in header]
    table = pd.read_csv(
        path,
        sep=FIELD_SEPARATOR,
        header=0,
        names=names,
        dtype=str,
        keep_default_na=False,
        quoting=csv.QUOTE_NONE,
        encoding="utf-8",
        engine="c",
    )
    return table, header


def field_types(header: list[str]) -> dict[str, str]:
    """Map each field name of an atomic header to its RecBole type (``token``, ``float``, ...)."""
    return dict(cell.split(":", 1) for cell in header)


def write_atomic(table: pd.DataFrame, header: list[str], path: str | os.PathLike) -> None:
    """Write ``table`` under ``header`` to ``path`` atomically (temporary file, then rename)."""
    path = Path(path)
    names = [cell.split(":", 1)[0] for cell in header]
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="") as handle:
            handle.write(FIELD_SEPARATOR.join(header) + "\n")
            table[names].to_csv(
                handle, sep=FIELD_SEPARATOR, header=False, index=False, quoting=csv.QUOTE_NONE,
                escapechar=None, lineterminator="\n",
            )
        os.chmod(temporary, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file ordinary permissions
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
