"""Learnable against fixed synaptic delays on Delay-Randman.

    python examples/learnable_delays.py           # 5 seeds, 30 epochs: about 3 minutes
    python examples/learnable_delays.py --small   # 1 seed, 6 epochs: about 30 s

The data is `eqslax.data.delay_randman` (8 classes, 10 units, $T = 60$, class delays up
to $D = 16$ steps, jitter 2): its classes share one random manifold, onset distribution
and set of delays, and differ only in which input unit is delayed by how much. The
network is `DCLSDelay(10 -> 4, max delay D)`, a LIF layer with a short leak (0.3, a
coincidence detector), then `Linear` and an `LI` readout, trained with BPTT
(`Accumulated(reduce="max")`: cross-entropy of the readout's maximum over time; Adam
$10^{-2}$, batch 32). Both variants start from the same random positions, rounded to
whole steps:

- `fixed`: the positions stay there (integer delays, $\\sigma = 0.01$, one-hot kernel);
  only weights and biases train.
- `learned`: the positions train with the weights (their own Adam learning rate, 0.1: Adam
  moves a parameter by about its learning rate per update, and a position must travel
  whole steps), through the Gaussian kernel of width $\\sigma$ annealed by
  `eqslax.delay_sigma` from $D/2$ to 0.2 over the first half of the epochs (then
  constant); after training they are rounded to whole steps (`eqslax.round_delays`), as
  in Hammouamri et al. (2023), and the test accuracy is that of the rounded,
  integer-delay network (`learned, before rounding` is the same network before).

`--json PATH` also writes the numbers (the documentation's Results page is rendered from
them).
"""

import argparse
import json
import sys
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

import eqslax
from eqslax.data import delay_randman

LOSS = eqslax.Accumulated(reduce="max")


def network(key, n_units, hidden, n_classes, max_delay, learn, decay, weight_scale):
    """`[DCLSDelay, LIF, Linear, LI]` with integer starting positions."""
    k = jax.random.split(key, 2)
    delay = eqslax.DCLSDelay(n_units, hidden, max_delay, train_position=learn, key=k[0])
    delay = eqx.tree_at(lambda m: m.weight, delay, weight_scale * delay.weight)
    delay = (
        delay.rounded()
        if not learn
        else eqx.tree_at(lambda m: m.position, delay, jnp.round(delay.position))
    )
    readout = eqx.nn.Linear(hidden, n_classes, key=k[1])
    return eqslax.Connect([delay, eqslax.LIF(hidden, decay), readout, eqslax.LI(n_classes, 0.9)])


def test_accuracy(model, xs, ys) -> float:
    outputs = jax.vmap(lambda x: eqslax.simulate(model, x)[1])(xs)
    return float(eqslax.accuracy(LOSS, outputs, ys))


def optimizer(lr: float, position_lr: float) -> optax.GradientTransformation:
    """Adam, with its own learning rate for the delay positions: Adam moves a parameter by
    about its learning rate per update, and a position has to travel whole steps."""

    def labels(params):
        return jax.tree_util.tree_map_with_path(
            lambda path, _: "position" if "position" in jax.tree_util.keystr(path) else "rest",
            params,
        )

    return optax.multi_transform(
        {"position": optax.adam(position_lr), "rest": optax.adam(lr)}, labels
    )


def train(
    data,
    seed,
    *,
    learn,
    epochs,
    batch_size,
    lr,
    position_lr,
    hidden,
    max_delay,
    decay,
    weight_scale,
    anneal,
):
    """One seed of one variant: `(test accuracy, seconds, test accuracy before rounding)`
    (the last `None` for fixed delays)."""
    key = jax.random.key(seed)
    model = network(
        key, data.train_x.shape[-1], hidden, data.n_classes, max_delay, learn, decay, weight_scale
    )
    step = eqslax.train_offline(model, LOSS, optimizer(lr, position_lr))
    state = step.init(model)
    order_key = jax.random.fold_in(key, 1)
    n = data.train_x.shape[0]
    started = time.perf_counter()
    for epoch in range(epochs):
        if learn:
            final, fraction = anneal
            sigma = eqslax.delay_sigma(epoch, epochs, max_delay / 2, final, fraction)
            model = eqslax.anneal_delays(model, sigma)
        order = np.asarray(jax.random.permutation(jax.random.fold_in(order_key, epoch), n))
        for start in range(0, n - batch_size + 1, batch_size):
            batch = order[start : start + batch_size]
            model, state, _, _ = step(model, state, data.train_x[batch], data.train_y[batch])
    seconds = time.perf_counter() - started
    before = None
    if learn:
        before = test_accuracy(model, data.test_x, data.test_y)
        model = eqslax.round_delays(model)
    return test_accuracy(model, data.test_x, data.test_y), seconds, before


def summary(values) -> dict:
    values = [float(v) for v in values]
    spread = float(np.std(values, ddof=1)) if len(values) > 1 else None
    return {"mean": float(np.mean(values)), "std": spread, "per_seed": values}


def table(data: dict) -> str:
    lines = ["| delays | test accuracy (mean ± std over seeds) | per seed | s / run |"]
    lines.append("|---|---|---|---|")
    for name, row in data["variants"].items():
        acc = row["test_accuracy"]
        spread = "" if acc["std"] is None else f" ± {acc['std']:.3f}"
        seeds = ", ".join(f"{v:.3f}" for v in acc["per_seed"])
        lines.append(f"| {name} | {acc['mean']:.3f}{spread} | {seeds} | {row['seconds']:.1f} |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="1 seed, 6 epochs")
    parser.add_argument("--seeds", type=int, default=None, help="(5)")
    parser.add_argument("--epochs", type=int, default=None, help="(30)")
    parser.add_argument("--classes", type=int, default=8)
    parser.add_argument("--units", type=int, default=10)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--max-delay", type=int, default=16)
    parser.add_argument("--jitter", type=int, default=2)
    parser.add_argument("--samples", type=int, default=100, help="samples per class")
    parser.add_argument("--hidden", type=int, default=4)
    parser.add_argument("--decay", type=float, default=0.3, help="hidden LIF leak")
    parser.add_argument("--weight-scale", type=float, default=3.0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--position-lr", type=float, default=0.1, help="Adam's for positions")
    parser.add_argument("--final-sigma", type=float, default=0.2, help="sigma at the end")
    parser.add_argument(
        "--anneal-fraction", type=float, default=0.5, help="share of the epochs annealed"
    )
    parser.add_argument("--json", default=None, help="also write the numbers here")
    args = parser.parse_args(argv)
    seeds = args.seeds or (1 if args.small else 5)
    epochs = args.epochs or (6 if args.small else 30)
    data = delay_randman(
        jax.random.key(0),
        n_classes=args.classes,
        n_units=args.units,
        n_steps=args.steps,
        max_delay=args.max_delay,
        jitter=args.jitter,
        samples_per_class=args.samples,
        dtype=jnp.result_type(float),
    )
    variants = {}
    for name, learn in (("fixed", False), ("learned", True)):
        runs = [
            train(
                data,
                seed,
                learn=learn,
                epochs=epochs,
                batch_size=args.batch_size,
                lr=args.lr,
                position_lr=args.position_lr,
                hidden=args.hidden,
                max_delay=args.max_delay,
                decay=args.decay,
                weight_scale=args.weight_scale,
                anneal=(args.final_sigma, args.anneal_fraction),
            )
            for seed in range(seeds)
        ]
        variants[name] = {
            "test_accuracy": summary([acc for acc, _, _ in runs]),
            "seconds": float(np.mean([s for _, s, _ in runs])),
        }
        if learn:
            variants["learned, before rounding"] = {
                "test_accuracy": summary([before for _, _, before in runs]),
                "seconds": variants[name]["seconds"],
            }
    shown = list(sys.argv[1:] if argv is None else argv)
    if "--json" in shown:  # where the numbers went is not part of how they were measured
        del shown[shown.index("--json") : shown.index("--json") + 2]
    result = {
        "command": " ".join(["python examples/learnable_delays.py", *shown]),
        "seeds": seeds,
        "epochs": epochs,
        "chance": 1.0 / args.classes,
        "variants": variants,
    }
    print(table(result))
    if args.json:
        eqslax.atomic_write(args.json, (json.dumps(result, indent=1) + "\n").encode())
    return result


if __name__ == "__main__":
    main()
