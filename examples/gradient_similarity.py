"""How close is each learning rule's gradient to BPTT's? Prints markdown tables.

    python examples/gradient_similarity.py online       # OSTL, TBPTT(1), RTRL on 64-50-10
    python examples/gradient_similarity.py approximate  # OSTL, OTTT, OTPE, ApproxOTPE, e-prop

`--json PATH` also writes the numbers (the documentation's Results page is built from
them).

Every number is a cosine similarity to BPTT's gradient at the same (initial) parameters
on the same batch, per layer and global, in float64.
"""

import argparse
import json
import sys

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

import eqslax  # noqa: E402
from eqslax.data import randman  # noqa: E402


def batch(encoding: str, units: int, steps: int, size: int, seed: int):
    data = randman(
        jax.random.key(seed),
        n_classes=10,
        n_units=units,
        n_steps=steps,
        samples_per_class=8,
        encoding=encoding,
        dtype=jnp.float64,
    )
    return data.train_x[:size], data.train_y[:size]


def relative_error(a, b) -> float:
    leaves_a, leaves_b = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    return max(
        float(jnp.max(jnp.abs(x - y)) / jnp.max(jnp.abs(y))) for x, y in zip(leaves_a, leaves_b)
    )


def online_similarity(seed: int = 0) -> dict:
    """64-50-10 LIF on T-Randman (T = 20, batch 32), per-step loss on output spikes."""
    xs, ys = batch("time", 64, 20, 32, seed)
    model = eqslax.feedforward((64, 50, 10), key=jax.random.key(seed + 1))
    loss = eqslax.PerStep()
    reference = eqslax.BPTT().grad(model, loss, xs, ys)
    rules = {}
    for name, rule in [
        ("OSTL", eqslax.OSTL()),
        ("TBPTT(1)", eqslax.TruncatedBPTT(1)),
        ("RTRL", eqslax.RTRL()),
    ]:
        grads = rule.grad(model, loss, xs, ys)
        c = eqslax.analysis.cosine_similarity(grads, reference)
        rules[name] = {
            "global": float(c.global_cosine),
            "layers": [float(v) for v in c.layer_cosine],
        }
        if name == "RTRL":
            rules[name]["max_relative_error"] = relative_error(grads, reference)
    return {"layers": ["layer 0 (64→50)", "layer 1 (50→10)"], "rules": rules}


def online_table(data: dict) -> str:
    rows = ["| rule | global | " + " | ".join(data["layers"]) + " |", "|---|---|---|---|"]
    for name, c in data["rules"].items():
        rows.append(
            f"| {name} | {c['global']:.6f} | " + " | ".join(f"{v:.6f}" for v in c["layers"]) + " |"
        )
    rows.append(
        f"\nRTRL max relative error to BPTT: {data['rules']['RTRL']['max_relative_error']:.2e}"
    )
    return "\n".join(rows)


RULES = {
    "OSTL": lambda: eqslax.OSTL(),
    "OTTT": lambda: eqslax.OTTT(),
    "OTPE": lambda: eqslax.OTPE(),
    "ApproxOTPE": lambda: eqslax.ApproxOTPE(),
    "e-prop": lambda: eqslax.EProp(),
}


def approximate_similarity(seeds: int = 5) -> dict:
    """3 layers (20-64-64-10: two LIF layers, LI readout), per-step cross-entropy.
    Per encoding and rule: `[global, layer 0, layer 1, layer 2]` cosines, one row per seed."""
    data = {"seeds": seeds, "columns": ["global", "layer 0", "layer 1", "layer 2 (readout)"]}
    for encoding in ("time", "rate"):
        scores = {name: [] for name in RULES}
        for seed in range(seeds):
            xs, ys = batch(encoding, 20, 50, 32, seed)
            model = eqslax.feedforward(
                (20, 64, 64, 10), key=jax.random.key(100 + seed), readout="li"
            )
            loss = eqslax.PerStep()
            reference = eqslax.BPTT().grad(model, loss, xs, ys)
            for name, rule in RULES.items():
                c = eqslax.analysis.cosine_similarity(rule().grad(model, loss, xs, ys), reference)
                scores[name].append([float(c.global_cosine), *map(float, c.layer_cosine)])
        data[encoding] = scores
    return data


def approximate_table(data: dict) -> str:
    lines = []
    for encoding in ("time", "rate"):
        lines += [
            f"\n{encoding.upper()[0]}-Randman ({data['seeds']} seeds, mean ± std)\n",
            "| rule | " + " | ".join(data["columns"]) + " |",
            "|---|---|---|---|---|",
        ]
        for name, values in data[encoding].items():
            v = np.asarray(values)
            cells = [f"{m:.4f} ± {s:.4f}" for m, s in zip(v.mean(0), v.std(0))]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table", choices=["online", "approximate"])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--json", metavar="PATH", help="also write the numbers to this JSON file")
    args = parser.parse_args()
    if args.seeds < 1:
        parser.error(f"--seeds must be >= 1, got {args.seeds}")
    if args.table == "online":
        data = online_similarity()
        print(online_table(data))
    else:
        data = approximate_similarity(args.seeds)
        print(approximate_table(data))
    if args.json:
        command = "python examples/gradient_similarity.py " + " ".join(sys.argv[1:])
        data = {"command": command, "table": args.table, "jax": jax.__version__, **data}
        eqslax.atomic_write(args.json, (json.dumps(data, indent=2) + "\n").encode())
