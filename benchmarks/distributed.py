"""Training throughput against the number of devices: data-parallel BPTT and OTTT steps.

    python -m benchmarks.distributed --devices 1,2,4,8 --out DIR    # simulated CPU devices
    python -m benchmarks.distributed --gpu --out DIR                # the GPUs JAX sees

For each rule and device count $D$ the script builds the training step `eqslax.fit` runs
with `mesh=eqslax.distributed.data_mesh(jax.devices()[:D])`: the global batch split along
its batch axis over the $D$ devices (`eqslax.distributed.shard_batch`), the model and the
optimiser state replicated (`eqslax.distributed.replicate`), XLA reducing the gradients.
BPTT is `eqslax.train_offline` (one update per batch); OTTT is `eqslax.train_online`
(one update per time step). The global batch stays the same for every $D$ (strong
scaling), so each device trains `batch / D` samples. Reported per rule and $D$: the
median seconds of one step, the throughput (samples per second), the speed-up over one
device and the largest parameter difference from the one-device step (the agreement
check, made before timing). Steps are timed interleaved, one call per device count per
round, closed with `jax.block_until_ready`.

**Caveat.** Without `--gpu` the devices are simulated on the CPU
(`--xla_force_host_platform_device_count`) and all of them share the machine's cores: the
numbers show what splitting the batch and reducing the gradients cost, not a speed-up
(with 2 cores, expect no gain past 2 devices). On several GPUs the same script, with
`--gpu`, measures the real scaling; it needs no change of code.
"""

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RULES = ("bptt", "ottt")
RESULT_PREFIX = "RESULT "


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    from ._common import parse_ints, parse_names

    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.distributed", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--devices", default=None, help="device counts (default 1,2,4,8)")
    parser.add_argument("--rules", default=",".join(RULES), help=f"subset of {','.join(RULES)}")
    parser.add_argument("--sizes", default="20,128,10", help="input,hidden,output units")
    parser.add_argument("--steps", type=int, default=50, help="time steps T (default 50)")
    parser.add_argument("--batch", type=int, default=64, help="global batch (default 64)")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (default 5)")
    parser.add_argument("--gpu", action="store_true", help="use the GPUs JAX sees")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds for the run")
    parser.add_argument("--out", default="benchmark_results/distributed")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.devices = parse_ints(args.devices or "1,2,4,8", "--devices")
    args.rules = parse_names(args.rules, "--rules", RULES)
    args.sizes = parse_ints(args.sizes, "--sizes")
    if len(args.sizes) != 3:
        raise ValueError(f"`--sizes` must be input,hidden,output, got {args.sizes}.")
    for name in ("steps", "batch", "repeats"):
        if getattr(args, name) < 1:
            raise ValueError(f"`--{name}` must be >= 1, got {getattr(args, name)}.")
    bad = [d for d in args.devices if args.batch % d]
    if bad:
        raise ValueError(
            f"`--batch` ({args.batch}) must be a multiple of every device count; "
            f"{', '.join(map(str, bad))} does not divide it."
        )
    return args


# --- child: the measurements, in a process that sees the devices ------------------------


def _steps(model, rule: str):
    import optax

    import eqslax

    loss, adam = eqslax.PerStep(), optax.adam(1e-3)
    if rule == "bptt":
        return eqslax.train_offline(model, loss, adam)
    return eqslax.train_online(model, eqslax.OTTT(), loss, adam)


def _largest_difference(a, b) -> float:
    import equinox as eqx
    import jax
    import numpy as np

    leaves = zip(*(jax.tree.leaves(eqx.filter(m, eqx.is_inexact_array)) for m in (a, b)))
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in leaves)


def child(args: argparse.Namespace) -> dict[str, Any]:
    import jax

    import eqslax
    from eqslax.distributed import data_mesh, replicate, shard_batch

    from ._common import device_note, time_interleaved

    available = jax.device_count()
    counts = [d for d in args.devices if d <= available]
    units, hidden, classes = args.sizes
    key = jax.random.key(0)
    model = eqslax.feedforward((units, hidden, classes), key=jax.random.fold_in(key, 0))
    shape = (args.batch, args.steps, units)
    xs = jax.random.bernoulli(jax.random.fold_in(key, 1), 0.2, shape).astype(jax.numpy.float32)
    ys = jax.random.randint(jax.random.fold_in(key, 2), (args.batch,), 0, classes)
    rows = []
    for rule in args.rules:
        step = _steps(model, rule)
        state = step.init(model)
        single = step(model, state, xs, ys)[0]
        calls = {}
        for d in counts:
            mesh = data_mesh(jax.devices()[:d])
            placed = (*replicate((model, state), mesh), *shard_batch((xs, ys), mesh))
            calls[d] = lambda step=step, placed=placed: step(*placed)
        timings = time_interleaved(calls, args.repeats)
        for d in counts:
            seconds = timings[d]["median_s"]
            rows.append(
                {
                    "rule": rule,
                    "devices": d,
                    "per_device_batch": args.batch // d,
                    "median_s": seconds,
                    "cpu_s": timings[d]["cpu_s"],
                    "compile_s": timings[d]["compile_s"],
                    "samples_per_s": args.batch / seconds,
                    "max_abs_diff_vs_1_device": _largest_difference(calls[d]()[0], single),
                }
            )
    base = {r["rule"]: r["samples_per_s"] for r in rows if r["devices"] == min(counts)}
    for row in rows:
        row["speedup"] = row["samples_per_s"] / base[row["rule"]]
    return {
        "rows": rows,
        "skipped_devices": [d for d in args.devices if d > available],
        "device": device_note(),
    }


# --- parent: one child process, with the devices it needs ---------------------------------


def run_child(args: argparse.Namespace, argv: Sequence[str]) -> dict[str, Any]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))
    if not args.gpu:
        flag = f"--xla_force_host_platform_device_count={max(args.devices)}"
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {flag}".strip()
        env["JAX_PLATFORMS"] = "cpu"
    command = [sys.executable, "-m", "benchmarks.distributed", "--child", *argv]
    done = subprocess.run(
        command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=args.timeout
    )
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :])
    tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-5:])
    raise RuntimeError(f"benchmarks.distributed: the measuring process failed: {tail}")


def table(rows) -> str:
    from ._common import markdown_table

    headers = ["rule", "devices", "batch per device", "ms per step", "samples/s", "speed-up"]
    headers.append("max abs Δθ vs 1 device")
    body = [
        [
            r["rule"],
            r["devices"],
            r["per_device_batch"],
            1e3 * r["median_s"],
            r["samples_per_s"],
            r["speedup"],
            f"{r['max_abs_diff_vs_1_device']:.1e}",
        ]
        for r in rows
    ]
    return markdown_table(headers, body)


def plot(rows, path: str) -> None:
    from ._common import new_figure, save_figure

    figure, axes = new_figure()
    ax = axes[0, 0]
    for rule in dict.fromkeys(r["rule"] for r in rows):
        mine = [r for r in rows if r["rule"] == rule]
        ax.plot([r["devices"] for r in mine], [r["samples_per_s"] for r in mine], "o-", label=rule)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("devices")
    ax.set_ylabel("training samples / s")
    ax.legend()
    figure.tight_layout()
    save_figure(figure, path)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Measure in a child process that sees the devices; print the table; write
    `results.json` and `distributed.png` into `--out`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.child:
        import jax

        if args.gpu and jax.default_backend() != "gpu":
            raise SystemExit(f"--gpu given but JAX sees no GPU: {jax.devices()}")
        print(RESULT_PREFIX + json.dumps(child(args)), flush=True)
        return {}
    from ._common import write_json

    measured = run_child(args, argv)
    results = {
        "benchmark": "distributed",
        "command": "python -m benchmarks.distributed " + " ".join(argv),
        "config": {k: v for k, v in vars(args).items() if k != "child"},
        "simulated_devices": not args.gpu,
        "note": (
            "simulated CPU devices share the same cores: these numbers show the cost of "
            "splitting the batch and reducing gradients, not a speed-up"
            if not args.gpu
            else "one GPU per device"
        ),
        **measured,
    }
    print(table(results["rows"]))
    if results["skipped_devices"]:
        print(f"skipped (not that many devices): {results['skipped_devices']}")
    print(f"note: {results['note']}")
    write_json(os.path.join(args.out, "results.json"), results)
    plot(results["rows"], os.path.join(args.out, "distributed.png"))
    return results


if __name__ == "__main__":
    main()
