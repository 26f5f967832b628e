"""What training the seeds of a rule as one vmapped program costs against training them
one after the other: `eqslax.compare(..., vmap_seeds=True)` against `vmap_seeds=False`.

    python -m benchmarks.compare_seeds --rules bptt,ostl,eprop --seeds 3 --epochs 2 --out DIR

The model and data are the demo's (`make demo`): T-Randman with 10 classes, 20 units,
50 steps and 800 training samples; a 20-64-10 network (LIF hidden layer, LI readout);
the per-step cross-entropy; batch 32. For each rule, both ways train the same seeds
from the same initial models (their results agree; see
`tests/test_compare_api.py::test_vmapped_seeds_equal_sequential_runs`). Reported per
rule and way: the compile time of the training step (once for all seeds when vmapped,
once for the shared step when sequential), the median time per epoch of the training
steps of all seeds, the process CPU time of the whole `eqslax.compare` call and its wall
time. The two ways run in rounds, one of each per round, so that load from other
processes on a shared machine reaches both; ratios are the medians of the per-round
ratios (sequential over vmapped).
"""

import argparse
import statistics
import sys
import time

import jax

import eqslax
from eqslax.data import randman

from ._common import device_note, markdown_table, parse_ints, parse_names, write_json

WAYS = ("vmapped", "sequential")


def _parse(argv):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compare_seeds")
    parser.add_argument("--rules", default="bptt,ostl,eprop")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--sizes", default="20,64,10", help="units,hidden,classes")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--samples", type=int, default=100, help="samples per class")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--out", default="benchmark_results/compare_seeds")
    args = parser.parse_args(argv)
    args.rules = parse_names(args.rules, "--rules", tuple(eqslax.compare.RULES))
    args.sizes = parse_ints(args.sizes, "--sizes")
    if len(args.sizes) != 3:
        parser.error(f"--sizes must be units,hidden,classes, got {args.sizes}.")
    for name in ("seeds", "epochs", "rounds", "steps", "samples", "batch"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}.")
    return args


def _one(args, data, name: str, vmapped: bool) -> dict:
    units, hidden, classes = args.sizes

    def model(key):
        return eqslax.feedforward((units, hidden, classes), key=key, readout="li")

    wall, cpu = time.perf_counter(), time.process_time()
    result = eqslax.compare(
        model,
        [name],
        data,
        eqslax.PerStep(),
        seeds=args.seeds,
        epochs=args.epochs,
        batch_size=args.batch,
        vmap_seeds=vmapped,
        similarity_every=10**9,
        trajectory_every=10**9,
        progress=False,
    )
    run = result.runs[name]
    return {
        "compile_s": run.compile_time_s,
        "epoch_s": run.time_per_epoch_s,
        "cpu_s": time.process_time() - cpu,
        "wall_s": time.perf_counter() - wall,
        "vmapped": run.vmapped,
        "test_accuracy": [s.final["test_accuracy"] for s in run.seeds],
    }


def main(argv=None) -> dict:
    args = _parse(argv)
    units, _, classes = args.sizes
    data = randman(
        jax.random.key(0),
        n_classes=classes,
        n_units=units,
        n_steps=args.steps,
        samples_per_class=args.samples,
    )
    rows, results = [], {}
    for name in args.rules:
        rounds = []
        for _ in range(args.rounds):
            rounds.append({way: _one(args, data, name, way == "vmapped") for way in WAYS})
        results[name] = rounds

        def median(way, key, rounds=rounds):
            return statistics.median(r[way][key] for r in rounds)

        def ratio(key, rounds=rounds):
            return statistics.median(r["sequential"][key] / r["vmapped"][key] for r in rounds)

        rows.append(
            [name]
            + [median(way, key) for key in ("compile_s", "epoch_s", "wall_s") for way in WAYS]
            + [ratio("epoch_s"), ratio("cpu_s"), ratio("wall_s")]
        )
    headers = ["rule"] + [
        f"{key} {way}" for key in ("compile s", "s / epoch", "compare() wall s") for way in WAYS
    ]
    headers += ["seq / vmap epoch", "seq / vmap CPU", "seq / vmap wall"]
    table = markdown_table(headers, rows)
    given = sys.argv[1:] if argv is None else argv
    command = "python -m benchmarks.compare_seeds " + " ".join(given)
    print(f"{args.seeds} seeds, {args.epochs} epochs, {args.rounds} rounds; `{command}`\n")
    print(table)
    summary = {"command": command, "device": device_note(), "args": vars(args), "rules": results}
    write_json(f"{args.out}/results.json", summary)
    return summary


if __name__ == "__main__":
    main()
