"""Forecasting the Mackey-Glass series one step ahead with BPTT and the online rules.

    python examples/mackey_glass.py            # six rules, 3 seeds: about a minute
    python examples/mackey_glass.py --small    # three rules, one seed: about 30 s

The series is `eqslax.neurobench.mackey_glass_series`, cut by
`eqslax.data.forecasting_windows`: its first 80 % into windows of `--steps` points
(stride `--stride`) for training, the rest into windows for testing, so no test point is
seen in training, both standardised with the training part's mean and standard
deviation. At every step $t$ of a window the network reads $x_t$ and predicts
$x_{t+1}$ from its leaky-integrator readout; the loss is
`PerStep(optax.l2_loss)` $= \\frac1T\\sum_t \\tfrac12 (y_t - x_{t+1})^2$. Online rules
update at every step, BPTT once per batch. `eqslax.compare` ranks the rules by test
$R^2$ (1 is a perfect forecast, 0 is predicting the mean).
`examples/compare_mackey_glass.toml` runs a similar experiment (batch 16, 10 epochs)
from the command line: `python -m eqslax compare --config ...`.

`--json PATH` also writes the table's numbers (the documentation's Results page is
rendered from them).
"""

import argparse
import json
import sys

import jax.numpy as jnp
import optax

import eqslax
from eqslax.data import forecasting_windows
from eqslax.neurobench import mackey_glass_series


def run(
    rules, *, points, steps, stride, hidden, weight_scale, seeds, epochs, batch_size, lr, online_lr
) -> eqslax.compare.CompareResult:
    """`eqslax.compare` of `rules` (registry names) on the forecasting task."""
    series = mackey_glass_series(points)
    data = forecasting_windows(series, window=steps, stride=stride, dtype=jnp.result_type(float))
    offline = {n for n, entry in eqslax.compare.RULES.items() if entry.driver == "offline"}
    specs = [eqslax.compare.rule(n, lr=lr if n in offline else online_lr) for n in rules]
    return eqslax.compare(
        lambda key: eqslax.feedforward(
            (1, hidden, 1), key=key, readout="li", weight_scale=weight_scale
        ),
        specs,
        data,
        eqslax.PerStep(optax.l2_loss),
        seeds=seeds,
        epochs=epochs,
        batch_size=batch_size,
        progress=False,
        similarity_every=10**6,
        trajectory_every=10**6,
        description="Mackey-Glass one-step forecast",
    )


def rows(result) -> dict:
    """Per rule: test R^2 and MSE (mean, 95 % half-width over seeds), lr, updates, time."""
    out = {}
    for name, rule_run in result.runs.items():
        r2, mse = result.interval(name, "test_r2"), result.interval(name, "test_mse")
        out[name] = {
            "lr": rule_run.lr,
            "updates": rule_run.updates,
            "time_per_epoch_s": rule_run.time_per_epoch_s,
            "test_r2": r2.to_dict(),
            "test_mse": mse.to_dict(),
            "test_r2_per_seed": [float(v) for v in result.values(name, "test_r2")],
        }
    return out


def _cell(interval: dict) -> str:
    half = interval["ci95_half_width"]
    return f"{interval['mean']:.4f}" + ("" if half is None else f" ± {half:.4f}")


def table(data: dict) -> str:
    lines = [
        "| rule | lr | test R² | test MSE | updates | time / epoch (s) |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in data["rules"].items():
        lines.append(
            f"| {name} | {row['lr']:g} | {_cell(row['test_r2'])} | {_cell(row['test_mse'])} "
            f"| {row['updates']} | {row['time_per_epoch_s']:.3f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--small", action="store_true", help="bptt, ottt, eprop; one seed, 400 points"
    )
    parser.add_argument("--rules", default=None, help="(bptt,ostl,ottt,otpe,aotpe,eprop)")
    parser.add_argument("--points", type=int, default=None, help="series length (1200)")
    parser.add_argument("--steps", type=int, default=40, help="window length T")
    parser.add_argument("--stride", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--weight-scale", type=float, default=3.0)
    parser.add_argument("--seeds", type=int, default=None, help="(3)")
    parser.add_argument("--epochs", type=int, default=None, help="(10)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-2, help="Adam's for BPTT")
    parser.add_argument("--online-lr", type=float, default=2e-4, help="for online rules")
    parser.add_argument("--json", default=None, help="also write the numbers here")
    args = parser.parse_args(argv)
    small = {"rules": "bptt,ottt,eprop", "points": 400, "seeds": 1, "epochs": 40}
    full = {"rules": "bptt,ostl,ottt,otpe,aotpe,eprop", "points": 1200, "seeds": 3, "epochs": 30}
    sizes = {k: getattr(args, k) for k in full}
    sizes = {k: (small if args.small else full)[k] if v is None else v for k, v in sizes.items()}
    result = run(
        sizes.pop("rules").split(","),
        steps=args.steps,
        stride=args.stride,
        hidden=args.hidden,
        weight_scale=args.weight_scale,
        batch_size=args.batch_size,
        lr=args.lr,
        online_lr=args.online_lr,
        **sizes,
    )
    shown = list(sys.argv[1:] if argv is None else argv)
    if "--json" in shown:  # where the numbers went is not part of how they were measured
        del shown[shown.index("--json") : shown.index("--json") + 2]
    command = " ".join(["python examples/mackey_glass.py", *shown])
    data = {"command": command, "seeds": sizes["seeds"], "rules": rows(result)}
    print(table(data))
    if args.json:
        eqslax.atomic_write(args.json, (json.dumps(data, indent=1) + "\n").encode())
    return data


if __name__ == "__main__":
    main()
