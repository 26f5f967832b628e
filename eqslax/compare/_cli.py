"""``eqslax compare`` on the command line."""

import sys

from ._registry import RULES


def add_compare(commands, data_arguments) -> None:
    parser = commands.add_parser(
        "compare", help="train the same model with several rules and write a report"
    )
    data_arguments(parser)
    parser.set_defaults(hidden=32, epochs=8, samples=100, lr=1e-2, out="runs/compare")
    parser.add_argument(
        "--rules",
        default="bptt,rtrl,ostl,eprop",
        help=f"comma-separated, from: {', '.join(sorted(RULES))}",
    )
    parser.add_argument("--online-lr", type=float, default=2e-3)
    parser.add_argument("--grid", type=int, default=15, help="landscape grid points per axis")
    parser.set_defaults(run=run)


def run(args) -> int:
    from ._report import write_report
    from ._run import CompareConfig, run_comparison

    rules = tuple(r.strip() for r in args.rules.split(",") if r.strip())
    unknown = [r for r in rules if r not in RULES]
    if unknown or not rules:
        sys.stderr.write(
            f"eqslax compare: unknown rule(s) {', '.join(map(repr, unknown)) or '(none given)'}; "
            f"valid rules: {', '.join(sorted(RULES))}.\n"
        )
        return 2
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
        grid=args.grid,
    )
    results = run_comparison(config)
    path = write_report(results, args.out)
    print(f"report written to {path}")
    return 0
