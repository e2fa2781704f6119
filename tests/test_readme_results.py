"""The README's results tables are the benchmark's own summaries in docs/results, cell for cell."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
K_TABLE = re.compile(r"^\| model(?: \| K = \d+)+ \|\n\|---(?:\|---)+\|\n((?:\|.*\|\n)+)", re.MULTILINE)


def first_k_table(markdown: str, after: str) -> dict[str, list[str]]:
    """model -> cells of the first table of K columns after the text ``after``; a cell of fewer seeds
    ends '(n = 2)', one of one seed is its value and '(n = 1)'."""
    start = markdown.index(after)
    rows = K_TABLE.search(markdown, start).group(1)
    table = {}
    for row in rows.strip().splitlines():
        model, *cells = [cell.strip() for cell in row.strip("|").split("|")]
        cells = [re.sub(r" ± 0\.0000 \(n=1\)$", " (n = 1)", cell) for cell in cells]
        table[model] = [re.sub(r" \(n=(\d+)\)$", r" (n = \1)", cell) for cell in cells]
    return table


@pytest.mark.parametrize("heading, results", [
    ("## Results", "docs/results/ml-100k/results.md"),
    ("### Online Retail: real new products", "docs/results/online_retail/results.md"),
    ("K = 3 with `--candidates all` (every item is a candidate", "docs/results/ml-100k-all/results.md"),
    ("With five seeds (session 13)", "docs/results/ml-100k-5seeds/results.md"),
    ("K = 3 with `--candidates all` (new products ranked among all", "docs/results/online_retail-all/results.md"),
])
def test_readme_table_is_the_rendered_summary(heading, results):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"]({results})" in readme[readme.index(heading):], f"the section {heading!r} must link {results}"
    rendered = first_k_table((ROOT / results).read_text(encoding="utf-8"), "## Summary")
    assert first_k_table(readme, heading) == rendered
