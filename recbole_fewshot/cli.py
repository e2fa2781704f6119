"""The ``recbole-fewshot`` command (also ``python -m recbole_fewshot``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import recbole_fewshot  # noqa: F401  (registers the plugin)
from recbole_fewshot.data.split import FewShotSplitError, SplitSpec, materialize, resolve_source, summary_lines


def _recbole_overrides(extra: Sequence[str], parser: argparse.ArgumentParser) -> list[str]:
    """Keep ``--key=value`` arguments for RecBole's own command-line layer; refuse anything else."""
    bad = [arg for arg in extra if not (arg.startswith("--") and len(arg[2:].split("=")) == 2)]
    if bad:
        parser.error(f"unrecognised arguments {bad}: RecBole overrides are written --key=value")
    return list(extra)


def _run(args: argparse.Namespace, overrides: list[str]) -> int:
    from recbole.quick_start import run_recbole

    # RecBole reads overrides from sys.argv itself (highest precedence), exactly as its run_recbole.py.
    sys.argv = [sys.argv[0], *overrides]
    result = run_recbole(model=args.model, dataset=args.dataset, config_file_list=args.config_files or None)
    print(f"best valid: {dict(result['best_valid_result'] or {})}")
    print(f"test result: {dict(result['test_result'] or {})}")
    return 0


def _split(args: argparse.Namespace) -> int:
    spec = SplitSpec(
        shots=args.shots, policy=args.policy, new_item_ratio=args.new_item_ratio,
        valid_share=args.valid_share, max_shots=args.max_shots, seed=args.seed,
    )
    source = resolve_source(args.dataset, args.data_path, uid_field=args.user_field,
                            iid_field=args.item_field, time_field=args.time_field)
    name, manifest = materialize(source, spec, args.out)
    for line in summary_lines(manifest):
        print(line)
    print(name)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recbole-fewshot", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run_recbole with plugin or built-in models; extra --key=value are RecBole overrides")
    run.add_argument("--model", "-m", required=True)
    run.add_argument("--dataset", "-d", required=True)
    run.add_argument("--config-files", nargs="+", default=None)

    split = commands.add_parser("split", help="write a few-shot new-item split as RecBole atomic files")
    split.add_argument("--dataset", required=True)
    split.add_argument("--shots", type=int, required=True)
    split.add_argument("--policy", choices=["time", "random"], default="time")
    split.add_argument("--new-item-ratio", type=float, default=0.2)
    split.add_argument("--valid-share", type=float, default=0.5)
    split.add_argument("--max-shots", type=int, default=10)
    split.add_argument("--seed", type=int, default=2020)
    split.add_argument("--data-path", default=None, help="folder holding <dataset>/<dataset>.inter (ml-100k: embedded)")
    split.add_argument("--user-field", default="user_id")
    split.add_argument("--item-field", default="item_id")
    split.add_argument("--time-field", default="timestamp")
    split.add_argument("--out", required=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    try:
        if args.command == "run":
            return _run(args, _recbole_overrides(extra, parser))
        if extra:
            parser.error(f"unrecognised arguments {extra}")
        return _split(args)
    except FewShotSplitError as error:
        print(f"recbole-fewshot: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
