"""Speed and fidelity of ``recbole-fewshot embed``'s settings on synthetic product text.

Encodes N product titles (about 20 word pieces), N long descriptions (past the model's 256 word-piece
limit), made from a fixed vocabulary with a seed, and a catalogue of N/2 of each, shuffled, with each setting, and prints a markdown table: texts/s
(the best of ``--repeats`` rounds; rounds visit the settings in turn, so load from other processes
falls on all of them alike), texts per CPU-second of this process (all its threads; on a busy machine
texts/s falls, this much less), the ratio of texts/s to the code path before length sorting and
``--max-length`` (fp32, 256 word pieces, batches of 64 in the original order), and the cosine of each
vector to the fp32 full-length one (min and mean).

    python tools/bench_embed.py --n 128 --repeats 2
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable

import numpy as np

from recbole_fewshot.datasets import text

WORDS = ("white red blue pink green black ivory vintage retro classic large small mini jumbo set of "
         "ceramic glass metal wooden cotton paper enamel heart star flower bird christmas garden kitchen "
         "party lunch tea cake tin bag box mug bottle candle holder lantern frame clock sign cushion "
         "cover bunting doormat tray jar bowl plate cup spoon hook hanging decoration gift wrap card "
         "with and for the a in design pattern print polkadot stripe floral rose regency").split()


def synthetic_texts(n: int, words: int, seed: int) -> list[str]:
    """``n`` texts of ``words`` words drawn from :data:`WORDS`, plus a number, reproducible by ``seed``."""
    rng = np.random.default_rng(seed)
    return [" ".join([*rng.choice(WORDS, words), str(rng.integers(1, 100))]) for _ in range(n)]


def old_path(encoder, texts: list[str], batch_size: int = 64) -> np.ndarray:
    """The code path before: the model's own length limit, batches in the original order."""
    return np.concatenate([encoder.encode(texts[start:start + batch_size], batch_size=batch_size,
                                          show_progress_bar=False, convert_to_numpy=True)
                           for start in range(0, len(texts), batch_size)])


def cosines(vectors: np.ndarray, reference: np.ndarray) -> np.ndarray:
    return (vectors * reference).sum(1) / np.linalg.norm(vectors, axis=1) / np.linalg.norm(reference, axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=128, help="texts of each kind (default 128)")
    parser.add_argument("--repeats", type=int, default=2, help="timed rounds; the best counts (default 2)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: embed's default)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    args = parser.parse_args()

    spec = text.resolve_model()
    full = text.load_encoder(spec, args.device, max_length=10_000)  # the model's own limit: 256
    settings: dict[str, Callable[[list[str]], np.ndarray]] = {"old code path (fp32, 256)": lambda t: old_path(full, t)}
    for backend in text.BACKENDS:
        if backend == "int8" and full.device.type != "cpu":
            continue
        for max_length in (text.DEFAULT_MAX_LENGTH, 256):
            encoder = text.load_encoder(spec, args.device, max_length, backend)
            settings[f"{backend}, {max_length}"] = (
                lambda t, encoder=encoder: text.encode(encoder, t, args.batch_size, args.threads))
    titles, descriptions = synthetic_texts(args.n, 15, seed=0), synthetic_texts(args.n, 250, seed=1)
    catalogue = titles[:args.n // 2] + descriptions[:args.n - args.n // 2]
    np.random.default_rng(2).shuffle(catalogue)
    sets = {"titles": titles, "descriptions": descriptions, "catalogue": catalogue}
    for name, texts in sets.items():
        pieces = [len(ids) for ids in full.tokenizer(texts, verbose=False)["input_ids"]]
        print(f"{name}: {len(texts)} texts, {np.mean(pieces):.0f} word pieces on average (with [CLS] and [SEP])")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{platform.processor() or platform.machine()}, {text.default_threads()} cores available, "
          f"torch threads {args.threads or text.default_threads()}, device {full.device}, load average {load:.1f}")

    best = {(name, setting): float("inf") for name in sets for setting in settings}
    best_cpu = dict(best)
    vectors = {}
    for _ in range(args.repeats):
        for name, texts in sets.items():
            for setting, run in settings.items():
                started, started_cpu = time.perf_counter(), time.process_time()
                vectors[name, setting] = run(texts)
                best[name, setting] = min(best[name, setting], time.perf_counter() - started)
                best_cpu[name, setting] = min(best_cpu[name, setting], time.process_time() - started_cpu)

    print("\n| texts | backend, max length | texts/s | texts per CPU-s | x old | cosine to fp32, 256: min | mean |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, texts in sets.items():
        reference = vectors[name, "old code path (fp32, 256)"]
        old_rate = len(texts) / best[name, "old code path (fp32, 256)"]
        for setting in settings:
            rate = len(texts) / best[name, setting]
            similarity = cosines(vectors[name, setting], reference)
            print(f"| {name} | {setting} | {rate:.1f} | {len(texts) / best_cpu[name, setting]:.1f} | "
                  f"{rate / old_rate:.2f} | {similarity.min():.4f} | "
                  f"{similarity.mean():.4f} |")


if __name__ == "__main__":
    main()
