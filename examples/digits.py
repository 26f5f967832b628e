"""Handwritten digits (scikit-learn's 8x8 set), latency-coded, with BPTT and online rules.

    python examples/digits.py            # five rules, 2 seeds: a few minutes on a CPU
    python examples/digits.py --small    # BPTT and OTTT, one seed, 3 epochs

A real public data set that works offline: scikit-learn ships the 1797 digits
(`sklearn.datasets.load_digits`; `pip install scikit-learn`). Each image's 64 pixels,
scaled to $[0, 1]$, are latency-coded over $T$ steps by `eqslax.encode.latency`: a pixel
$x > 0$ spikes once, at step $\\lfloor (T-1)(1-x) \\rfloor$, so darker pixels spike first.
A fixed 80/20 split (seed 0) gives 1437 training and 360 test images. The 64-`hidden`-10
network (LIF hidden layer, LI readout) is trained with `PerStep()` (softmax
cross-entropy of the readout at every step, averaged over time) by `eqslax.compare`:
BPTT once per batch, the online rules (OSTL, OTTT, OTPE, e-prop) at every step.

It also times one BPTT epoch with the data prestaged on the device
(`ArrayLoader(prestage=True)`, batches gathered there), streamed from the host
(`prestage=False, prefetch=0`, one batch copied when it is needed) and streamed with
prefetching (`prestage=False, prefetch=2`: a background thread gathers and copies the
next two batches while the device trains). `--json PATH` writes the numbers the
documentation's Results page shows.
"""

import argparse
import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

import eqslax
from eqslax.data import ArrayLoader, Loaders, Splits
from eqslax.encode import latency


def digits(n_steps: int, dtype=None) -> Splits:
    """The digits as latency-coded spike trains `(batch, n_steps, 64)`, split 80/20."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ImportError(
            "examples/digits.py reads scikit-learn's bundled digits: pip install scikit-learn"
        ) from None
    images, labels = load_digits(return_X_y=True)
    dtype = jnp.result_type(float) if dtype is None else dtype
    pixels = jnp.asarray(images / 16.0, dtype)
    spikes = jax.vmap(lambda x: latency(x, n_steps))(pixels)
    order = np.random.default_rng(0).permutation(len(labels))
    cut = int(0.8 * len(labels))
    train, test = order[:cut], order[cut:]
    labels = jnp.asarray(labels, jnp.int32)
    return Splits(spikes[train], labels[train], spikes[test], labels[test])


def network(hidden: int):
    return lambda key: eqslax.feedforward((64, hidden, 10), key=key, readout="li")


def run(data, rules, *, hidden, seeds, epochs, batch_size, lr, online_lr):
    """`eqslax.compare` of `rules` (registry names) on the digits."""
    offline = {n for n, entry in eqslax.compare.RULES.items() if entry.driver == "offline"}
    specs = [eqslax.compare.rule(n, lr=lr if n in offline else online_lr) for n in rules]
    return eqslax.compare(
        network(hidden),
        specs,
        data,
        eqslax.PerStep(),
        seeds=seeds,
        epochs=epochs,
        batch_size=batch_size,
        progress=False,
        similarity_every=10**6,
        trajectory_every=10**6,
        description="scikit-learn digits, latency-coded",
    )


LOADERS = {  # name: (prestage, prefetch)
    "prestaged": (True, 0),
    "streamed": (False, 0),
    "prefetched": (False, 2),
}


def loader_times(data, *, hidden, batch_size, lr, epochs=3) -> dict:
    """Seconds per BPTT epoch with the data prestaged on the device, streamed from the
    host one batch at a time, and streamed with two batches prefetched on a background
    thread: the median over `epochs` epochs of each, run in turn (one epoch of each per
    round, after one that compiles), so that the machine's load falls on all three."""
    model = network(hidden)(jax.random.key(0))
    step = eqslax.train_offline(model, eqslax.PerStep(), optax.adam(lr))
    host = {k: np.asarray(getattr(data, k)) for k in ("train_x", "train_y", "test_x", "test_y")}

    def epoch_time(prestage, prefetch):
        options = dict(prestage=prestage, prefetch=prefetch)
        train = ArrayLoader(host["train_x"], host["train_y"], batch_size, **options)
        test = ArrayLoader(host["test_x"], host["test_y"], 256, **options)
        _, history = eqslax.fit(
            model, step, Loaders(train, test), epochs=1, key=jax.random.key(1), progress=False
        )
        return history["epoch_time"][0]

    for options in LOADERS.values():  # compiles
        epoch_time(*options)
    seconds = {name: [] for name in LOADERS}
    for _ in range(epochs):
        for name, options in LOADERS.items():
            seconds[name].append(epoch_time(*options))
    times = {name: float(np.median(values)) for name, values in seconds.items()}
    return {"epochs": epochs, "device": jax.devices()[0].platform, "epoch_time_s": times}


def rows(result) -> dict:
    """Per rule: test accuracy (mean, 95 % half-width over seeds), lr, updates, time."""
    out = {}
    for name, rule_run in result.runs.items():
        accuracy = result.interval(name, "test_accuracy")
        out[name] = {
            "lr": rule_run.lr,
            "updates": rule_run.updates,
            "time_per_epoch_s": rule_run.time_per_epoch_s,
            "test_accuracy": accuracy.to_dict(),
            "test_accuracy_per_seed": [float(v) for v in result.values(name, "test_accuracy")],
        }
    return out


def _cell(interval: dict) -> str:
    half = interval["ci95_half_width"]
    return f"{100 * interval['mean']:.1f} %" + ("" if half is None else f" ± {100 * half:.1f}")


def table(data: dict) -> str:
    lines = [
        "| rule | lr | test accuracy | updates | time / epoch (s) |",
        "|---|---|---|---|---|",
    ]
    for name, row in data["rules"].items():
        lines.append(
            f"| {name} | {row['lr']:g} | {_cell(row['test_accuracy'])} | {row['updates']} "
            f"| {row['time_per_epoch_s']:.2f} |"
        )
    times = data["loader"]["epoch_time_s"]
    lines.append("")
    lines.append(
        f"BPTT epoch ({data['loader']['device']}): prestaged {times['prestaged']:.3f} s, "
        f"streamed from the host {times['streamed']:.3f} s, streamed with prefetching "
        f"{times['prefetched']:.3f} s."
    )
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="bptt and ottt; 1 seed, 3 epochs")
    parser.add_argument("--rules", default=None, help="(bptt,ostl,ottt,otpe,eprop)")
    parser.add_argument("--steps", type=int, default=16, help="latency window T")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--seeds", type=int, default=None, help="(2)")
    parser.add_argument("--epochs", type=int, default=None, help="(15)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-3, help="Adam's for BPTT")
    parser.add_argument("--online-lr", type=float, default=5e-4, help="for online rules")
    parser.add_argument("--json", default=None, help="also write the numbers here")
    args = parser.parse_args(argv)
    small = {"rules": "bptt,ottt", "seeds": 1, "epochs": 3}
    full = {"rules": "bptt,ostl,ottt,otpe,eprop", "seeds": 2, "epochs": 15}
    sizes = {k: getattr(args, k) for k in full}
    sizes = {k: (small if args.small else full)[k] if v is None else v for k, v in sizes.items()}
    data = digits(args.steps)
    options = dict(hidden=args.hidden, batch_size=args.batch_size, lr=args.lr)
    result = run(data, sizes.pop("rules").split(","), online_lr=args.online_lr, **options, **sizes)
    shown = list(sys.argv[1:] if argv is None else argv)
    if "--json" in shown:  # where the numbers went is not part of how they were measured
        del shown[shown.index("--json") : shown.index("--json") + 2]
    out = {
        "command": " ".join(["python examples/digits.py", *shown]),
        "seeds": sizes["seeds"],
        "epochs": sizes["epochs"],
        "rules": rows(result),
        "loader": loader_times(data, **options),
    }
    print(table(out))
    if args.json:
        eqslax.atomic_write(args.json, (json.dumps(out, indent=1) + "\n").encode())
    return out


if __name__ == "__main__":
    main()
