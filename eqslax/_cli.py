"""Command line: `eqslax train` and `eqslax compare` (also `python -m eqslax`)."""

import argparse
import json
import math
import os
import sys
import time

from .compare._cli import add_compare

_ENCODINGS = ("time", "rate", "mixed")


def _data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", default="randman", choices=["randman"])
    parser.add_argument("--encoding", default="time", choices=_ENCODINGS)
    parser.add_argument("--p", type=float, default=0.5, help="rate-coded fraction (mixed)")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--units", type=int, default=20)
    parser.add_argument("--steps", type=int, default=50, help="time steps per sample")
    parser.add_argument("--samples", type=int, default=200, help="samples per class")
    parser.add_argument("--hidden", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/train")


def load_data(args):
    import jax

    from .data import randman

    return randman(
        jax.random.fold_in(jax.random.key(args.seed), 0),
        n_classes=args.classes,
        n_units=args.units,
        n_steps=args.steps,
        samples_per_class=args.samples,
        encoding=args.encoding,
        p=args.p,
    )


# flag -> (attribute, smallest allowed value); every one is an int. Flags a command
# does not have are skipped.
INT_FLAGS = {
    "--classes": ("classes", 2),
    "--units": ("units", 1),
    "--steps": ("steps", 1),
    "--samples": ("samples", 1),
    "--hidden": ("hidden", 1),
    "--epochs": ("epochs", 1),
    "--batch-size": ("batch_size", 1),
    "--seed": ("seed", 0),
    "--checkpoint-every": ("checkpoint_every", 1),
    "--grid": ("grid", 2),
    "--seeds": ("seeds", 1),
    "--updates": ("updates", 1),
}
POSITIVE_FLAGS = {"--lr": "lr", "--online-lr": "online_lr"}


def check_flags(args) -> str | None:
    """The first invalid number among a command's flags, as a message, or `None`."""
    for flag, (name, least) in INT_FLAGS.items():
        value = getattr(args, name, None)
        if value is not None and value < least:
            return f"`{flag}` must be an integer >= {least}, got {value}"
    for flag, name in POSITIVE_FLAGS.items():
        value = getattr(args, name, None)
        if value is not None and not (math.isfinite(value) and value > 0):
            return f"`{flag}` must be a finite number > 0, got {value}"
    p = getattr(args, "p", None)
    if p is not None and not (math.isfinite(p) and 0.0 <= p <= 1.0):
        return f"`--p` must be a fraction in [0, 1], got {p}"
    return None


def _train(args) -> int:
    import jax
    import optax

    import eqslax

    from ._preflight import prepare_output_dir

    rules = {"bptt": eqslax.BPTT()}
    if args.rule not in rules:
        sys.stderr.write(
            f"eqslax train: unknown rule {args.rule!r}; valid rules: {', '.join(rules)}.\n"
        )
        return 2
    problem = check_flags(args)
    if problem is None:
        try:
            prepare_output_dir(args.out, "--out", "eqslax train")
        except OSError as error:
            problem = str(error).removeprefix("eqslax train: ")
    if problem is not None:
        sys.stderr.write(f"eqslax train: {problem.rstrip('.')}.\n")
        return 2
    data = load_data(args)
    key = jax.random.key(args.seed)
    model = eqslax.feedforward(
        (args.units, args.hidden, args.classes), key=jax.random.fold_in(key, 1), readout="li"
    )
    loss = eqslax.Accumulated(reduce="mean")
    step = eqslax.train_offline(model, loss, optax.adam(args.lr), rules[args.rule])
    start = time.perf_counter()
    try:
        model, history = eqslax.fit(
            model,
            step,
            data,
            epochs=args.epochs,
            batch_size=args.batch_size,
            key=jax.random.fold_in(key, 2),
            checkpoint_dir=args.out,
            checkpoint_every=args.checkpoint_every,
            resume=args.resume,
        )
    except FloatingPointError as error:  # training diverged: say so, exit non-zero
        sys.stderr.write(f"eqslax train: {error}\n")
        return 1
    summary = {
        "rule": args.rule,
        "encoding": args.encoding,
        "epochs": args.epochs,
        "final_test_accuracy": history["test_accuracy"][-1] if history["epoch"] else None,
        "wall_time_s": time.perf_counter() - start,
    }
    print(json.dumps(summary, indent=2))
    os.makedirs(args.out, exist_ok=True)
    eqslax._checkpoint.atomic_write(
        os.path.join(args.out, "summary.json"), json.dumps(summary, indent=2).encode()
    )
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="eqslax", description="Train and compare spiking networks and learning rules."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train one model with one rule on Randman")
    _data_arguments(train)
    train.add_argument("--rule", default="bptt")
    train.add_argument("--checkpoint-every", type=int, default=None)
    train.add_argument("--resume", action="store_true")
    train.set_defaults(run=_train)
    add_compare(commands, _data_arguments)
    args = parser.parse_args(argv)
    return args.run(args)
