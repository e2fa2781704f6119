"""The benchmark's summaries of results.csv: results.md (tables of mean ± std over seeds) and ndcg_vs_shots.png."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

from recbole_fewshot.benchmark.store import TIMING_COLUMNS


def _mean_std(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return mean, std


def summarise(rows: list[dict]) -> dict:
    """Mean and std over seeds of every test metric: {(shots, model): {metric: (mean, std, n)}}."""
    groups: dict[tuple[int, str], dict[str, list[float]]] = {}
    for row in rows:
        if row.get("status") != "ok":
            continue
        group = groups.setdefault((int(row["shots"]), row["model"]), {})
        for column, value in row.items():
            if column.startswith("test_") and value not in ("", None):
                group.setdefault(column[5:], []).append(float(value))
    return {key: {m: (*_mean_std(v), len(v)) for m, v in metrics.items()} for key, metrics in groups.items()}


def write_markdown(rows: list[dict], path: Path, command: str, split_stats: dict[int, dict], candidates: str,
                   tuned: Mapping[str, dict] | None = None) -> None:
    """results.md: per K a table of mean ± std over seeds, best per column in bold, and the settings each
    model won on valid where ``tuned`` has them."""
    summary = summarise(rows)
    lines = [f"# Few-shot new-item benchmark (candidates: {candidates})", "", "```", command, "```", ""]
    failed = [r for r in rows if r.get("status") != "ok"]
    lines += summary_table(summary) + [""]
    for shots in sorted({k for k, _ in summary}):
        stats = split_stats.get(shots, {})
        lines += [f"## K = {shots}", ""]
        if stats:
            lines += [
                f"Split: {stats.get('items')} items, {stats.get('users')} users; new items valid "
                f"{stats.get('valid_new_items')} / test {stats.get('test_new_items')}; test queries "
                f"{stats.get('test_query_interactions')} from {stats.get('test_users')} users (seed of the first split).",
                "",
            ]
        models = [m for k, m in sorted(summary) if k == shots]
        metrics = sorted({metric for m in models for metric in summary[(shots, m)]},
                         key=lambda name: (name.split("@")[0], int(name.split("@")[1]) if "@" in name else 0))
        best = {metric: max(summary[(shots, m)].get(metric, (-1,))[0] for m in models) for metric in metrics}
        lines.append("| model | seeds | " + " | ".join(metrics) + " |")
        lines.append("|---|---|" + "---|" * len(metrics))
        for model in models:
            cells = []
            for metric in metrics:
                mean, std, _ = summary[(shots, model)].get(metric, (float("nan"), 0.0, 0))
                text = f"{mean:.4f} ± {std:.4f}"
                cells.append(f"**{text}**" if mean == best[metric] else text)
            seeds = max(n for _, _, n in summary[(shots, model)].values())
            lines.append(f"| {model} | {seeds} | " + " | ".join(cells) + " |")
        lines.append("")
    if failed:
        lines += ["## Failed cells", ""] + [f"- {r['model']} K={r['shots']} seed={r['seed']}: {r.get('error')}" for r in failed] + [""]
    if tuned:
        lines += ["## Tuned settings (chosen on valid)", ""]
        lines += [f"- {model}: " + (", ".join(f"{key}: {_setting(value)}" for key, value in sorted(settings.items()))
                                    or "its shipped defaults")
                  for model, settings in sorted(tuned.items())] + [""]
    timing = _timing_lines(rows)
    if timing:
        lines += ["## Cost (mean over cells)", "", "| model | epochs | train s | s/epoch | eval s | peak MB |",
                  "|---|---|---|---|---|---|"] + timing + [""]
    path.write_text("\n".join(lines), encoding="utf-8")


def _setting(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def summary_table(summary: dict, metric: str = "ndcg@20") -> list[str]:
    """One row per model, one column per K: ``metric``'s mean ± std over seeds, the best per K in bold."""
    all_shots = sorted({k for k, _ in summary})
    models = sorted({m for _, m in summary})
    best = {k: max(summary[(k, m)][metric][0] for m in models if metric in summary.get((k, m), {})) for k in all_shots}
    lines = [f"## Summary: test {metric.upper()}, mean ± std over seeds", "",
             "| model | " + " | ".join(f"K = {k}" for k in all_shots) + " |", "|---|" + "---|" * len(all_shots)]
    for model in models:
        cells = []
        for k in all_shots:
            if metric not in summary.get((k, model), {}):
                cells.append("–")
                continue
            mean, std, n = summary[(k, model)][metric]
            text = f"{mean:.4f} ± {std:.4f}" + (f" (n={n})" if n < max(v[metric][2] for v in summary.values() if metric in v) else "")
            cells.append(f"**{text}**" if mean == best[k] else text)
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return lines


def _timing_lines(rows: list[dict]) -> list[str]:
    lines = []
    for model in sorted({r["model"] for r in rows if r.get("status") == "ok"}):
        mine = [r for r in rows if r["model"] == model and r.get("status") == "ok"]
        means = [_mean_std([float(r[c]) for r in mine])[0] for c in TIMING_COLUMNS]
        lines.append(f"| {model} | {means[0]:.1f} | {means[1]:.1f} | {means[2]:.2f} | {means[3]:.2f} | {means[4]:.0f} |")
    return lines


def plot(rows: list[dict], path: Path, metric: str = "ndcg@20") -> None:
    """NDCG@20 against K, one line per model, error bars of one std over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = summarise(rows)
    models = sorted({m for _, m in summary})
    figure, axis = plt.subplots(figsize=(9, 5))
    colours, markers, styles = plt.get_cmap("tab20").colors, "osD^v<>p", ("-", "--", ":")
    for index, model in enumerate(models):  # 20 colours x line styles: no two models look alike
        points = sorted((k, *summary[(k, m)][metric][:2]) for k, m in summary if m == model and metric in summary[(k, m)])
        if points:
            shots, means, stds = zip(*points)
            axis.errorbar(shots, means, yerr=stds, capsize=3, label=model, color=colours[index % 20],
                          marker=markers[index % len(markers)], linestyle=styles[index // 20 % len(styles)], alpha=0.9)
    axis.set_xlabel("K (support interactions per new item)")
    axis.set_ylabel(metric.upper())
    axis.set_title("New-item recommendation vs shots")
    axis.set_xticks(sorted({k for k, _ in summary}))
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    figure.tight_layout()
    temporary = path.with_name(f".{path.stem}.tmp.png")
    figure.savefig(temporary, dpi=120)
    plt.close(figure)
    os.replace(temporary, path)
