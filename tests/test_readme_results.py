"""The results tables of docs/results/README.md are the benchmark's own summaries there, cell for cell."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

RESULTS = Path(__file__).resolve().parent.parent / "docs" / "results"
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
    ("## ml-100k", "ml-100k/results.md"),
    ("## Online Retail: real new products", "online_retail/results.md"),
    ("K = 3 with `--candidates all` (every item is a candidate", "ml-100k-all/results.md"),
    ("With five seeds", "ml-100k-5seeds/results.md"),
    ("K = 3 with `--candidates all` (new products ranked among all", "online_retail-all/results.md"),
])
def test_readme_table_is_the_rendered_summary(heading, results):
    readme = (RESULTS / "README.md").read_text(encoding="utf-8")
    assert f"]({results})" in readme[readme.index(heading):], f"the section {heading!r} must link {results}"
    rendered = first_k_table((RESULTS / results).read_text(encoding="utf-8"), "## Summary")
    assert first_k_table(readme, heading) == rendered


def test_the_front_page_table_is_the_latest_benchmark_summary():
    readme = (RESULTS.parent.parent / "README.md").read_text(encoding="utf-8")
    results = "docs/results/latest/ml-100k/results.md"
    assert f"]({results})" in readme[readme.index("## Results"):], "the Results section must link its benchmark"
    rendered = first_k_table((RESULTS / "latest" / "ml-100k" / "results.md").read_text(encoding="utf-8"), "## Summary")
    assert first_k_table(readme, "## Results") == rendered
