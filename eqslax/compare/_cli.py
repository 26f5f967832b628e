"""`eqslax compare` on the command line: the built-in Randman experiment from flags, or
any experiment from a TOML file (`--config`)."""

import os
import sys

from ._registry import RULES


def add_compare(commands, data_arguments) -> None:
    parser = commands.add_parser(
        "compare", help="train the same model with several rules and write a report"
    )
    data_arguments(parser)
    parser.set_defaults(hidden=64, epochs=20, samples=100, lr=1e-2, out=None)
    parser.add_argument(
        "--rules",
        default="bptt,ostl,ottt,otpe,eprop",
        help=f"comma-separated, from: {', '.join(sorted(RULES))}",
    )
    parser.add_argument("--online-lr", type=float, default=2e-3)
    parser.add_argument("--grid", type=int, default=15, help="landscape grid points per axis")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per rule (seed, seed+1, ...)")
    parser.add_argument("--budget", default="epochs", choices=["epochs", "updates"])
    parser.add_argument(
        "--updates", type=int, default=None, help="updates per rule (budget=updates)"
    )
    parser.add_argument("--tune-lr", action="store_true", help="pick each lr on a validation split")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.add_argument(
        "--config",
        default=None,
        help="a TOML experiment (data, network, loss, rules, seeds, budget); the data, "
        "network and training flags are then not used (--out overrides its `out`)",
    )
    parser.set_defaults(run=run)


def _fail(message: str) -> int:
    sys.stderr.write(f"eqslax compare: {message}\n")
    return 2


def _prepare_out(out: str) -> str | None:
    """Create and probe the report folder before any training; a message if unusable."""
    from .._preflight import prepare_output_dir

    try:
        prepare_output_dir(out, "--out", "eqslax compare")
    except OSError as error:
        return str(error).removeprefix("eqslax compare: ").rstrip(".") + "."
    return None


def _existing_parts(out: str) -> str | None:
    """The first missing folder on the way to `out` (what probing it would create)."""
    path = os.path.abspath(out)
    missing = None
    while not os.path.exists(path):
        missing, path = path, os.path.dirname(path)
    return missing


def _remove_if_empty(created: str | None) -> None:
    """Undo what probing created when the run failed before writing anything."""
    if created is None:
        return
    for root, dirs, files in os.walk(created, topdown=False):
        if files:
            return
        for name in dirs:
            os.rmdir(os.path.join(root, name))
    os.rmdir(created)


def run_config(args) -> int:
    from ._api import compare
    from ._report import write_report
    from ._run import TUNE_GRID
    from ._toml import ConfigError, load_experiment

    try:
        experiment = load_experiment(args.config)
    except ConfigError as error:
        return _fail(str(error))
    created = _existing_parts(args.out or experiment.out)
    problem = _prepare_out(args.out or experiment.out)
    if problem is not None:
        return _fail(problem)
    options = dict(experiment.options)
    tune = options.pop("tune_lr")
    try:
        results = compare(
            experiment.model,
            experiment.rules,
            experiment.data,
            experiment.loss,
            tune_lr_grid=TUNE_GRID if tune else None,
            progress=not args.quiet,
            description=experiment.description,
            **options,
        )
    except (TypeError, ValueError) as error:
        _remove_if_empty(created)
        return _fail(f"{args.config}: {error}")
    config = {"config_file": args.config, **experiment.raw}
    path = write_report(results, args.out or experiment.out, config, grid=experiment.grid)
    print(f"report written to {path}")
    return 0


def run(args) -> int:
    from ._report import write_report
    from ._run import CompareConfig, run_comparison

    if args.config is not None:
        return run_config(args)
    rules = tuple(r.strip() for r in args.rules.split(",") if r.strip())
    unknown = [r for r in rules if r not in RULES]
    if unknown or not rules:
        return _fail(
            f"unknown rule(s) {', '.join(map(repr, unknown)) or '(none given)'}; "
            f"valid rules: {', '.join(sorted(RULES))}."
        )
    from .._cli import check_flags

    problem = check_flags(args)
    if problem is None:
        problem = _prepare_out(args.out or "runs/compare")
    if problem is not None:
        return _fail(problem.rstrip(".") + ".")
    config = CompareConfig(
        rules=rules,
        encoding=args.encoding,
        p=args.p,
        classes=args.classes,
        units=args.units,
        steps=args.steps,
        samples=args.samples,
        hidden=args.hidden,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        online_lr=args.online_lr,
        seed=args.seed,
        seeds=args.seeds,
        budget=args.budget,
        updates=args.updates,
        tune_lr=args.tune_lr,
        grid=args.grid,
    )
    results = run_comparison(config, progress=not args.quiet)
    path = write_report(results, args.out or "runs/compare", config, grid=args.grid)
    print(f"report written to {path}")
    return 0
