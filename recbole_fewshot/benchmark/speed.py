"""``recbole-fewshot bench-speed``: FewShotRec's cost against BPR's, measured in one process on one split.

Prints seconds per training epoch and per full-sort evaluation of the valid phase (each the fastest
of ``epochs`` runs) as ratios to BPR's (machines are noisy; ratios in one process are not), new-item
onboarding throughput, the process's peak resident memory after each model and, on a GPU, each
model's peak GPU memory. On a GPU every reading waits for the device's queued work.

It also times FewShotRec's behaviour encoder alone, as a floor under its figures: forward and backward
over the histories of each training batch's users (as an epoch encodes them, item vectors given), and
forward over every user once (as an evaluation does); and whole cells against DeepMusic's: the warm
backbone trained once (the cells share it, as the benchmark's do), then each model fitted with the
benchmark's epoch cap and patience, timed to the evaluation of its best valid epoch.

Each model is set up by the shared pipeline (:func:`recbole_fewshot.pipeline.prepare`), then timed here
epoch by epoch instead of fitted.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from recbole_fewshot.benchmark.cells import benchmark_settings


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _synchronize(device: torch.device) -> None:
    """Wait for the device's queued kernels, so wall-clock times on a GPU are times of finished work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _gpu_peak_mb(device: torch.device) -> float:
    """Peak GPU memory allocated by tensors since the last reset (nan on the CPU); resets the peak."""
    if device.type != "cuda":
        return float("nan")
    peak = torch.cuda.max_memory_allocated(device) / 2**20
    torch.cuda.reset_peak_memory_stats(device)
    return peak


def _fastest(device: torch.device, runs: int, work: Callable[[int], object]) -> float:
    """Wall-clock seconds of the fastest of ``runs`` calls ``work(run)``, the device synchronised around each."""
    seconds = []
    for run in range(runs):
        _synchronize(device)
        start = time.perf_counter()
        work(run)
        _synchronize(device)
        seconds.append(time.perf_counter() - start)
    return min(seconds)


def _time_model(model: str, dataset: str, config_dict: dict, epochs: int):
    """The fastest of ``epochs`` training epochs and of as many valid evaluations of a prepared run, its peak
    GPU memory, its model and its training data."""
    from recbole_fewshot.pipeline import prepare

    prepared = prepare(model, dataset, config_dict=config_dict)
    trainer, train_data = prepared.trainer, prepared.train_data
    if hasattr(trainer, "prepare_backbone"):
        trainer.prepare_backbone(train_data)
    device = prepared.config["device"]
    _gpu_peak_mb(device)
    epoch = _fastest(device, epochs, lambda run: trainer._train_epoch(train_data, run, show_progress=False))
    # fastest of as many evaluations too: the process's first evaluation also pays one-off setup
    evaluation = _fastest(device, epochs,
                          lambda _: trainer.evaluate(prepared.valid_data, load_best_model=False, show_progress=False))
    return epoch, evaluation, _gpu_peak_mb(device), prepared.model, train_data


CELL_MODELS = {"DeepMusic": ("DeepMusic", {}), "FewShotRec-GRU": ("FewShotRec", {"behaviour_encoder": "gru"}),
               "FewShotRec-CNN": ("FewShotRec", {"behaviour_encoder": "cnn"})}


def time_to_best(model: str, dataset: str, config_dict: dict) -> tuple[float, float, int]:
    """A cell's cost: seconds of its warm backbone (trained, or loaded where ``config_dict`` names a
    ``backbone_cache_dir`` already holding it), then seconds of ``fit`` until the evaluation of its best
    valid epoch, and that epoch."""
    from recbole_fewshot.pipeline import prepare

    prepared = prepare(model, dataset, config_dict=config_dict)
    trainer, device = prepared.trainer, prepared.config["device"]
    _synchronize(device)
    start = time.perf_counter()
    trainer.prepare_backbone(prepared.train_data)
    _synchronize(device)
    backbone = time.perf_counter() - start
    evaluations = []  # (seconds since fit began, valid score) after each evaluation

    def evaluated(epoch: int, score: float) -> None:
        _synchronize(device)
        evaluations.append((time.perf_counter() - start, score))

    start = time.perf_counter()
    trainer.fit(prepared.train_data, prepared.valid_data, saved=False, show_progress=False, callback_fn=evaluated)
    best = max(range(len(evaluations)), key=lambda i: (evaluations[i][1], -i))
    return backbone, evaluations[best][0], best


def encoder_floor(model, train_data, runs: int) -> tuple[float, float]:
    """Seconds (fastest of ``runs``) of FewShotRec's behaviour encoder alone: forward and backward over each
    user-grouped training batch's users' histories of backbone item vectors; and forward without gradients
    over every user once, as an evaluation encodes them."""
    from recbole_fewshot.trainer.user_grouped import UserGroupedBatches

    device = model.history.device
    uid = train_data._dataset.inter_feat[train_data._dataset.uid_field]
    batch_users = [torch.unique(uid[torch.as_tensor(rows)]).to(device)
                   for rows in UserGroupedBatches(train_data, epoch=0, seed=0).batches]

    def train_epoch(_):
        model.train()
        for users in batch_users:
            model.history_states(users).sum().backward()

    def every_user(_):
        model.eval()
        with torch.no_grad():
            model.every_user_representation()

    return _fastest(device, runs, train_epoch), _fastest(device, runs, every_user)


def onboarding_throughput(model, dataset, n_items: int = 10000, shots: int = 3, seed: int = 0) -> float:
    """New items embedded per second by ``model.onboard`` from raw features and raw support users."""
    rng = np.random.default_rng(seed)
    rows = []
    sources = rng.integers(1, dataset.item_num, n_items)
    for item in sources:
        row = {}
        for field in model.content.fields:
            value = dataset.item_feat[field][item]
            tokens = dataset.field2id_token.get(field)
            if tokens is not None and value.dim() == 0:
                row[field] = tokens[int(value)]
            elif tokens is not None:
                row[field] = " ".join(tokens[int(v)] for v in value if int(v) > 0)
            else:
                row[field] = value.tolist()
        rows.append(row)
    users = dataset.field2id_token[dataset.uid_field]
    support = [[users[u] for u in rng.integers(1, len(users), shots)] for _ in range(n_items)]
    device = next(model.parameters()).device
    _synchronize(device)
    start = time.perf_counter()
    model.onboard(rows, support)
    _synchronize(device)
    return n_items / (time.perf_counter() - start)


def bench_speed(dataset: str, shots: int, epochs: int, out: str, data_path: str | None = None,
                overrides: dict | None = None) -> dict:
    """Measure and print the figures; returns them: ``torch_threads``, ``device`` and per model label
    (``BPR``, ``FewShotRec-GRU``, ``FewShotRec-CNN``) its row under ``models``."""
    from recbole_fewshot.data.split import SplitSpec, materialize, resolve_source

    name, _ = materialize(resolve_source(dataset, data_path), SplitSpec(shots=shots), Path(out) / "splits")
    base = {"data_path": str(Path(out) / "splits"), "state": "ERROR", "show_progress": False,
            "checkpoint_dir": str(Path(out) / "saved"), "log_root": str(Path(out) / "log"), "topk": [20],
            "metrics": ["NDCG"], "valid_metric": "NDCG@20", "eval_batch_size": 65536, **(overrides or {})}
    bpr_epoch, bpr_eval, bpr_gpu_mb, bpr, _ = _time_model("BPR", name, base, epochs)
    bpr_row = {"epoch_s": bpr_epoch, "eval_s": bpr_eval, "peak_mb": _peak_mb(), "gpu_peak_mb": bpr_gpu_mb}
    figures = {"torch_threads": torch.get_num_threads(), "device": str(next(bpr.parameters()).device),
               "models": {"BPR": bpr_row}}
    for encoder in ("gru", "cnn"):
        epoch, evaluation, gpu_mb, model, train_data = _time_model("FewShotRec", name,
                                                                   {**base, "behaviour_encoder": encoder}, epochs)
        model.eval()
        onboarding = onboarding_throughput(model, train_data._dataset)
        peak_mb = _peak_mb()
        encoder_epoch, encoder_eval = encoder_floor(model, train_data, epochs)
        figures["models"][f"FewShotRec-{encoder.upper()}"] = {
            "epoch_s": epoch, "eval_s": evaluation, "epoch_ratio": epoch / bpr_epoch,
            "eval_ratio": evaluation / bpr_eval, "onboard_items_per_s": onboarding,
            "peak_mb": peak_mb, "gpu_peak_mb": gpu_mb,
            "encoder_epoch_s": encoder_epoch, "encoder_epoch_ratio": encoder_epoch / bpr_epoch,
            "encoder_eval_s": encoder_eval, "encoder_eval_ratio": encoder_eval / bpr_eval,
        }
    schedule = {key: value for key, value in benchmark_settings().items() if key in ("epochs", "stopping_step")}
    cells = {"backbone_cache_dir": str(Path(out) / "backbones"), **schedule, **(overrides or {})}
    figures["cells"], backbones = {}, []
    for label, (model, settings) in CELL_MODELS.items():
        backbone, to_best, best_epoch = time_to_best(model, name, {**base, **cells, **settings})
        backbones.append(backbone)
        figures["cells"][label] = {"to_best_s": to_best, "best_epoch": best_epoch}
    backbone_s = figures["backbone_s"] = backbones[0]  # the first cell trains it, the others load it
    deepmusic = backbone_s + figures["cells"]["DeepMusic"]["to_best_s"]
    for row in figures["cells"].values():
        row["cell_s"] = backbone_s + row["to_best_s"]
        row["cell_ratio"] = row["cell_s"] / deepmusic
    print(f"bench-speed on {name} ({figures['torch_threads']} torch threads; fastest of {epochs} epochs and evaluations; "
          f"device {figures['device']})")
    print(f"{'model':<16}{'s/epoch':>9}{'x BPR':>8}{'eval s':>9}{'x BPR':>8}{'onboard items/s':>17}{'peak MB':>9}"
          f"{'GPU MB':>9}")
    for label, row in figures["models"].items():
        print(f"{label:<16}{row['epoch_s']:>9.2f}{row.get('epoch_ratio', 1.0):>8.2f}{row['eval_s']:>9.3f}"
              f"{row.get('eval_ratio', 1.0):>8.2f}{row.get('onboard_items_per_s', float('nan')):>17.0f}{row['peak_mb']:>9.0f}"
              f"{row['gpu_peak_mb']:>9.0f}")
    for label, row in figures["models"].items():
        if "encoder_epoch_s" in row:
            print(f"{label} encoder alone: {row['encoder_epoch_s']:.2f} s per epoch ({row['encoder_epoch_ratio']:.2f}x BPR's "
                  f"epoch), {row['encoder_eval_s']:.3f} s over every user ({row['encoder_eval_ratio']:.2f}x BPR's evaluation)")
    print(f"whole cells to the best valid epoch (epochs {cells['epochs']}, patience {cells['stopping_step']}), "
          f"the shared warm backbone included ({backbone_s:.1f} s):")
    print(f"{'model':<16}{'best epoch':>11}{'model s':>9}{'cell s':>9}{'x DeepMusic':>13}")
    for label, row in figures["cells"].items():
        print(f"{label:<16}{row['best_epoch']:>11}{row['to_best_s']:>9.1f}{row['cell_s']:>9.1f}{row['cell_ratio']:>13.2f}")
    return figures
