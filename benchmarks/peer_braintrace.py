"""eqslax's online rules against braintrace's, each in its own environment.

The same network in both libraries, on the same weights and inputs (drawn with numpy
from one seed): `depth` hidden layers of LIF neurons (feed-forward, or one recurrent
layer), then a leaky readout, a softmax cross-entropy at every step. Per layer and
step, with the fast-sigmoid surrogate $1/(1 + 25|x|)^2$:

    I = W x + b [+ W_rec s_prev];  v = λ u + I;  s = H(v − ϑ);  u = v − ϑ s   (λ = 0.9, ϑ = 1)
    readout r = κ r_prev + W_out s + b_out                                    (κ = 0.9)

Paired algorithms:

- eqslax `OSTL` against braintrace `D_RTRL` (per-parameter diagonal RTRL, the same
  eligibility; for the recurrent layer both are the diagonal approximation);
- eqslax `OTTT(bias_trace=False)` against braintrace `pp_prop` (ES-D-RTRL: a
  presynaptic trace with decay λ times the postsynaptic factor, rank one);
- eqslax `EProp` against braintrace `EProp` with the readout leak κ as its trace filter.

Three modes:

- `--side eqslax` or `--side braintrace`: measure in this interpreter, write JSON.
- `--compare --peer-python PY`: run both sides as subprocesses, eqslax with this
  interpreter (or `--eqslax-python`), braintrace with `PY`, alternating for `--rounds`
  rounds, and print the table of medians.
- `--check` (with `--compare`): gradients of a single-layer float64 case from both
  sides, as cosines to eqslax's BPTT on the same weights.

braintrace is never a dependency: if `--peer-python` cannot import it, the script
says so and exits 0.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

import numpy as np

CONSTANTS = {"decay": 0.9, "threshold": 1.0, "slope": 25.0, "readout_decay": 0.9}
KINDS = ("ff", "rec")
EQSLAX_RULES = ("ostl", "ottt", "eprop")
PEER_RULES = {"ff": ("d_rtrl", "eprop", "pp_prop"), "rec": ("d_rtrl", "eprop", "pp_prop")}
PAIRS = (("ostl", "d_rtrl"), ("ottt", "pp_prop"), ("eprop", "eprop"))
DEFAULT_MODELS = (
    "ff1:32,200,32,128,10;ff1:32,200,32,256,10;ff2:32,200,32,256,10;rec1:32,200,32,256,10"
)
CHECK_MODELS = "ff1:4,40,8,16,4;rec1:4,40,8,16,4"
# readout leak of the gradient check: 0 makes the readout memoryless, where OSTL and
# D-RTRL are exact (equal to BPTT) for one feed-forward hidden layer
CHECK_KAPPAS = (0.0, 0.9)


def parse_models(text: str) -> list[dict[str, Any]]:
    """`"ff2:32,200,32,256,10;rec1:..."` -> kind, depth, batch, time, in, hidden, out."""
    models = []
    for part in (p.strip() for p in text.split(";") if p.strip()):
        try:
            head, numbers = part.split(":")
            kind, depth = head.rstrip("0123456789"), int(head[len(head.rstrip("0123456789")) :])
            batch, length, n_in, n_hidden, n_out = (int(v) for v in numbers.split(","))
        except ValueError:
            raise ValueError(
                f"`--models` entries look like ff2:32,200,32,256,10 (kind and hidden depth: "
                f"batch, time, in, hidden, out); got {part!r}."
            ) from None
        if kind not in KINDS or depth < 1 or (kind == "rec" and depth != 1):
            raise ValueError(
                f"`--models`: kind must be ff<depth> or rec1, got {head!r} in {part!r}."
            )
        if min(batch, length, n_in, n_hidden, n_out) <= 0:
            raise ValueError(f"`--models`: sizes must be positive, got {part!r}.")
        models.append(
            dict(
                kind=kind,
                depth=depth,
                batch=batch,
                length=length,
                n_in=n_in,
                n_hidden=n_hidden,
                n_out=n_out,
                name=part,
            )
        )
    if not models:
        raise ValueError(f"`--models` is empty: {text!r}.")
    return models


def problem(spec: dict[str, Any], seed: int, dtype) -> dict[str, Any]:
    """Weights (layout `(out, in)`), Bernoulli(0.2) input spikes and labels, from numpy."""
    rng = np.random.default_rng(seed)
    sizes = [spec["n_in"]] + [spec["n_hidden"]] * spec["depth"]
    uniform = lambda shape, scale: (scale * rng.uniform(-1, 1, shape)).astype(dtype)
    hidden_w = [uniform((n, m), 3.0 / np.sqrt(m)) for m, n in zip(sizes[:-1], sizes[1:])]
    hidden_b = [uniform((n,), 0.1) for n in sizes[1:]]
    n = spec["n_hidden"]
    recurrent = [uniform((n, n), 1.0 / np.sqrt(n))] if spec["kind"] == "rec" else []
    xs = (rng.random((spec["batch"], spec["length"], spec["n_in"])) < 0.2).astype(dtype)
    return {
        "constants": CONSTANTS,
        "recurrent": spec["kind"] == "rec",
        "hidden_weights": hidden_w,
        "hidden_biases": hidden_b,
        "recurrent_weights": recurrent,
        "readout_weight": uniform((spec["n_out"], n), 1.0 / np.sqrt(n)),
        "readout_bias": np.zeros(spec["n_out"], dtype),
        "xs": xs,
        "ys": rng.integers(0, spec["n_out"], spec["batch"]).astype(np.int32),
    }


# --- one side, in this interpreter ----------------------------------------------------


def _eqslax_side():
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    import eqslax

    def build(p):
        c = p["constants"]
        layers = []
        for k, (w, b) in enumerate(zip(p["hidden_weights"], p["hidden_biases"])):
            linear = eqx.nn.Linear(w.shape[1], w.shape[0], key=jax.random.key(0))
            layers.append(
                eqx.tree_at(lambda m: (m.weight, m.bias), linear, (jnp.asarray(w), jnp.asarray(b)))
            )
            lif = eqslax.LIF(
                w.shape[0],
                decay=c["decay"],
                threshold=c["threshold"],
                surrogate=eqslax.FastSigmoid(c["slope"]),
            )
            layers.append(
                eqslax.Recurrent(lif, weight=p["recurrent_weights"][k]) if p["recurrent"] else lif
            )
        w = p["readout_weight"]
        linear = eqx.nn.Linear(w.shape[1], w.shape[0], key=jax.random.key(0))
        layers.append(
            eqx.tree_at(
                lambda m: (m.weight, m.bias),
                linear,
                (jnp.asarray(w), jnp.asarray(p["readout_bias"])),
            )
        )
        layers.append(eqslax.LI(w.shape[0], decay=c["readout_decay"]))
        return eqslax.Connect(layers)

    rules = {
        "ostl": eqslax.OSTL(),
        "ottt": eqslax.OTTT(bias_trace=False),
        "eprop": eqslax.EProp(),
        "bptt": eqslax.BPTT(),
    }
    loss = eqslax.PerStep()

    def gradient_function(p, name):
        model, xs, ys = build(p), jnp.asarray(p["xs"]), jnp.asarray(p["ys"])
        rule = rules[name]
        fn = eqx.filter_jit(lambda model, xs, ys: rule.grad(model, loss, xs, ys))
        return model, lambda: fn(model, xs, ys)

    def named(p, model, grads):
        out = {}
        for k in range(len(p["hidden_weights"])):
            linear, neuron = grads.layers[2 * k], grads.layers[2 * k + 1]
            out[f"hidden{k}.weight"] = np.asarray(linear.weight)
            out[f"hidden{k}.bias"] = np.asarray(linear.bias)
            if p["recurrent"]:
                out[f"hidden{k}.recurrent"] = np.asarray(neuron.weight)
        out["readout.weight"] = np.asarray(grads.layers[-2].weight)
        out["readout.bias"] = np.asarray(grads.layers[-2].bias)
        return out

    def forward(p):
        model = build(p)
        run = jax.jit(jax.vmap(lambda x: eqslax.simulate(model, x)[1]))
        return np.asarray(run(jnp.asarray(p["xs"])))

    versions = {"eqslax": eqslax.__version__, "jax": jax.__version__, "equinox": eqx.__version__}
    return gradient_function, named, forward, versions, lambda grads: grads


def _peer_side():
    from benchmarks import _braintrace_side as side

    def named(p, model, grads):
        return side.named(p, grads)

    return side.gradient_function, named, side.forward, side.versions(), None


def measure_side(which: str, models, repeats: int, seed: int, check: bool, npz: str | None):
    import time

    import jax

    if check:
        jax.config.update("jax_enable_x64", True)
        if which == "braintrace":
            import brainstate

            brainstate.environ.set(precision=64)  # its states are float32 otherwise
    gradient_function, named, forward, versions, _ = (
        _eqslax_side() if which == "eqslax" else _peer_side()
    )
    dtype = np.float64 if jax.config.jax_enable_x64 else np.float32
    rows, arrays = [], {}
    cases = [(spec, kappa) for spec in models for kappa in (CHECK_KAPPAS if check else (None,))]
    for spec, kappa in cases:
        p = problem(spec, seed, dtype)
        if kappa is not None:
            p["constants"] = dict(CONSTANTS, readout_decay=kappa)
            spec = dict(spec, name=f"{spec['name']} kappa={kappa}")
        names = (
            EQSLAX_RULES + (("bptt",) if check else ())
            if which == "eqslax"
            else PEER_RULES[spec["kind"]]
        )
        for name in names:
            model, call = gradient_function(p, name)
            start = time.perf_counter()
            grads = jax.block_until_ready(call())
            first = time.perf_counter() - start
            times = []
            for _ in range(0 if check else repeats):
                start = time.perf_counter()
                jax.block_until_ready(call())
                times.append(time.perf_counter() - start)
            rows.append(
                {
                    "model": spec["name"],
                    "rule": name,
                    "first_call_s": first,
                    "median_s": statistics.median(times) if times else None,
                    "ms_per_step": 1e3 * statistics.median(times) / spec["length"]
                    if times
                    else None,
                    "times_s": times,
                }
            )
            if check:
                for key, value in named(p, model, grads).items():
                    arrays[f"{spec['name']}|{name}|{key}"] = value
        if check:
            arrays[f"{spec['name']}|forward"] = forward(p)
    if npz:
        np.savez(npz, **arrays)
    return {"side": which, "versions": versions, "rows": rows}


# --- the driver --------------------------------------------------------------------------


def _child(python: str, which: str, args, check: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out, npz = os.path.join(tmp, "out.json"), os.path.join(tmp, "grads.npz")
        command = [
            python,
            "-m",
            "benchmarks.peer_braintrace",
            "--side",
            which,
            "--models",
            CHECK_MODELS if check else args.models,
            "--repeats",
            str(args.repeats),
            "--seed",
            str(args.seed),
            "--json",
            out,
        ]
        if check:
            command += ["--check", "--npz", npz]
        env = dict(os.environ, PYTHONPATH=os.getcwd())
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=args.timeout
        )
        if done.returncode != 0:
            raise RuntimeError(f"the {which} side ({python}) failed:\n{done.stderr[-3000:]}")
        with open(out) as f:
            result = json.load(f)
        if check:
            with np.load(npz) as data:
                result["arrays"] = {k: data[k] for k in data.files}
        return result


def peer_available(python: str) -> str | None:
    """`None` if `python` imports braintrace, else why not."""
    if not python or not os.path.exists(python):
        return f"--peer-python {python!r} is not an interpreter on this machine"
    done = subprocess.run([python, "-c", "import braintrace"], capture_output=True, text=True)
    return (
        None
        if done.returncode == 0
        else f"{python} cannot import braintrace: {done.stderr.strip()[-300:]}"
    )


def _cosine(a, b) -> float:
    a, b = np.ravel(a), np.ravel(b)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-300))


def _max_relative(a: dict, b: dict) -> float:
    """Largest |a - b| over the largest |b|, the worst parameter of the network."""
    return max(float(np.max(np.abs(a[k] - b[k])) / (np.max(np.abs(b[k])) + 1e-300)) for k in b)


def _pair(row, key) -> str:
    return f"{row['eqslax_cosine_to_bptt'][key]:.6f} / {row['braintrace_cosine_to_bptt'][key]:.6f}"


def gradient_check(mine, peer) -> tuple[str, list[dict[str, Any]]]:
    """Per paired rule: each side's cosine to eqslax's BPTT and the two sides' distance."""
    from benchmarks._common import markdown_table

    m, q = mine["arrays"], peer["arrays"]
    keys = ["hidden0.weight", "hidden0.recurrent", "hidden0.bias", "readout.weight", "readout.bias"]
    grads = lambda arrays, name, rule: {
        k: arrays[f"{name}|{rule}|{k}"] for k in keys if f"{name}|{rule}|{k}" in arrays
    }
    rows, table = [], []
    for name in sorted({k.split("|")[0] for k in m}):
        diff = float(np.max(np.abs(m[f"{name}|forward"] - q[f"{name}|forward"])))
        bptt = grads(m, name, "bptt")
        for mine_rule, peer_rule in PAIRS:
            a, b = grads(m, name, mine_rule), grads(q, name, peer_rule)
            row = {
                "model": name,
                "eqslax": mine_rule,
                "braintrace": peer_rule,
                "readout_max_abs_diff": diff,
                "eqslax_cosine_to_bptt": {k: _cosine(a[k], bptt[k]) for k in bptt},
                "braintrace_cosine_to_bptt": {k: _cosine(b[k], bptt[k]) for k in bptt},
                "max_rel_diff": _max_relative(a, b),
            }
            rows.append(row)
            table.append(
                [name, f"{mine_rule} / {peer_rule}", f"{diff:.1e}"]
                + [_pair(row, k) if k in bptt else "-" for k in keys]
                + [f"{row['max_rel_diff']:.1e}"]
            )
    headers = (
        ["model", "eqslax / braintrace rule", "readout max abs diff"]
        + [f"cos to BPTT {k}" for k in keys]
        + ["max rel diff between them"]
    )
    return markdown_table(headers, table), rows


def timing_table(outs, models):
    """Headers, rows and a summary: medians over all rounds, and the median over rounds
    of each round's eqslax / braintrace ratio (the two sides of a round ran back to back)."""
    median = lambda side, model, rule: statistics.median(
        row["ms_per_step"]
        for out in outs
        if out["side"] == side
        for row in out["rows"]
        if row["model"] == model and row["rule"] == rule
    )
    rounds = (
        [o for o in outs if o["side"] == "eqslax"],
        [o for o in outs if o["side"] == "braintrace"],
    )
    table, summary = [], []
    for spec in models:
        name = spec["name"]
        cells = [name]
        for mine_rule, peer_rule in PAIRS:
            a, b = median("eqslax", name, mine_rule), median("braintrace", name, peer_rule)
            paired = statistics.median(
                _row(e, name, mine_rule) / _row(p, name, peer_rule) for e, p in zip(*rounds)
            )
            cells += [f"{a:.3f}", f"{b:.3f}", f"{paired:.2f}"]
            summary.append(
                {
                    "model": name,
                    "eqslax": mine_rule,
                    "braintrace": peer_rule,
                    "eqslax_ms_per_step": a,
                    "braintrace_ms_per_step": b,
                    "ratio_paired": paired,
                }
            )
        table.append(cells)
    headers = [
        "model (batch,T,in,hidden,out)",
        "eqslax OSTL ms/step",
        "braintrace D_RTRL ms/step",
        "OSTL / D_RTRL",
        "eqslax OTTT ms/step",
        "braintrace pp_prop ms/step",
        "OTTT / pp_prop",
        "eqslax EProp ms/step",
        "braintrace EProp ms/step",
        "EProp / EProp",
    ]
    return headers, table, summary


def compare(args) -> dict[str, Any]:
    from benchmarks._common import markdown_table

    why = peer_available(args.peer_python)
    if why:
        print(
            f"braintrace is not available ({why}); nothing to compare. Install it in its own "
            f"environment and pass --peer-python."
        )
        return {"skipped": why}
    mine_python = args.eqslax_python or sys.executable
    load = [os.getloadavg()]
    result: dict[str, Any] = {"command": " ".join(sys.argv), "rounds": []}
    if args.check:
        mine, peer = (
            _child(mine_python, "eqslax", args, True),
            _child(args.peer_python, "braintrace", args, True),
        )
        text, rows = gradient_check(mine, peer)
        print("Gradient check (float64, cosine of each online gradient to eqslax's BPTT):\n")
        print(text + "\n")
        result["check"] = rows
    for r in range(args.rounds):
        order = [("eqslax", mine_python), ("braintrace", args.peer_python)]
        for which, python in order if r % 2 == 0 else order[::-1]:
            out = _child(python, which, args, False)
            result["rounds"].append(out)
            print(f"round {r + 1}: {which} done (load {os.getloadavg()[0]:.2f})", file=sys.stderr)
        load.append(os.getloadavg())
    result["load_average_1_5_15_min"] = [[round(x, 2) for x in item] for item in load]
    headers, table, summary = timing_table(result["rounds"], parse_models(args.models))
    print(markdown_table(headers, table))
    versions = {o["side"]: o["versions"] for o in result["rounds"]}
    print(
        f"\nversions: {json.dumps(versions)}\nload average (1, 5, 15 min) at the start and "
        f"after each round: {result['load_average_1_5_15_min']}"
    )
    result.update(summary=summary, versions=versions)
    return result


def _row(out, model, rule) -> float:
    return next(r["ms_per_step"] for r in out["rows"] if r["model"] == model and r["rule"] == rule)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--compare", action="store_true", help="run both sides and print the table")
    mode.add_argument("--side", choices=("eqslax", "braintrace"), help="measure one side here")
    parser.add_argument(
        "--peer-python",
        default=os.environ.get("BRAINTRACE_PYTHON", ""),
        help="interpreter of braintrace's environment (default: $BRAINTRACE_PYTHON)",
    )
    parser.add_argument(
        "--eqslax-python", default=None, help="eqslax's interpreter (default: this one)"
    )
    parser.add_argument(
        "--models",
        default=DEFAULT_MODELS,
        help="';'-separated KIND:batch,time,in,hidden,out with KIND ff<depth> or rec1",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per rule in each child")
    parser.add_argument("--rounds", type=int, default=3, help="alternating child runs per side")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--check", action="store_true", help="also compare gradients (float64)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per child")
    parser.add_argument("--json", default=None, help="where to write the results")
    parser.add_argument("--npz", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.rounds < 1:
        parser.error(f"--repeats and --rounds must be >= 1, got {args.repeats} and {args.rounds}")
    parse_models(args.models)
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.side:
        result = measure_side(
            args.side,
            parse_models(CHECK_MODELS if args.check else args.models),
            args.repeats,
            args.seed,
            args.check,
            args.npz,
        )
    else:
        result = compare(args)
    if args.json:
        from benchmarks._common import write_json

        write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
