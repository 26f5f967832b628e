r"""Peak memory of each learning rule's gradient against sequence length, and the cost
of one online-learning step relative to one plain forward step.

BPTT keeps every step's activations for the backward pass, so its memory grows as
:math:`O(T)`; with ``jax.checkpoint`` it keeps only the carried state of each step (a
smaller slope); an online rule carries traces of a fixed size forward, so its working
memory should not depend on :math:`T` at all.

Each measurement runs in its own Python process, so that one rule's compiled code and
buffers cannot inflate the next one's peak. The child builds the model and data,
computes ``rule.grad(model, loss, xs, ys)``, waits for it, and reads

- the process's peak resident set size (``getrusage(RUSAGE_SELF).ru_maxrss``) and its
  growth over the value before the first compile (a coarse, whole-process number), and
- XLA's own buffer assignment for the same computation
  (``jax.jit(...).lower(...).compile().memory_analysis()``), and for a plain forward
  pass on the same batch. Both hold a time-major copy of ``xs`` and the stacked
  outputs, which are :math:`O(T)` whatever the rule; the difference of their ``temp``
  sizes, the *rule's own* working memory, is the number that shows :math:`O(T)` or
  :math:`O(1)`.

It then times ``rule.grad`` and a plain forward pass (``jax.vmap`` of
:func:`eqslax.simulate`) on the same batch, interleaved.

Run ``python -m benchmarks.memory --help`` for the options.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp

import eqslax

from ._common import (
    device_note,
    markdown_table,
    new_figure,
    parse_ints,
    parse_names,
    save_figure,
    time_interleaved,
    write_json,
)
from ._floors import FLOORS, as_tuple, network

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = {
    # (input, hidden, output) units of eqslax.feedforward(sizes, readout="li"):
    # Linear -> LIF -> Linear -> LI, the readout every rule here accepts (e-prop needs it).
    "medium": (32, 256, 10),
    "small": (8, 16, 4),  # RTRL's influence matrix is (state x parameters) per sample
    # The medium network with its LIF layer made recurrent: eqslax.Recurrent(LIF(256)).
    "recurrent": (32, 256, 10),
    # (input channels, positions, channels, kernel, output): Conv1d(2, 8, 5, padding 2) on
    # 32 positions -> LIF (8, 32), 256 units -> Flatten -> Linear(256, 10) -> LI.
    "conv": (2, 32, 8, 5, 10),
}
RESULT_PREFIX = "RESULT "


class RuleEntry(NamedTuple):
    """A rule to measure: the name eqslax exports it under, its options and the model
    size it runs on. Rules not (yet) in eqslax are listed and skipped."""

    attribute: str
    options: dict[str, Any]
    model: str = "medium"

    def available(self) -> bool:
        return hasattr(eqslax, self.attribute)

    def make(self) -> eqslax.AbstractLearningRule:
        return getattr(eqslax, self.attribute)(**self.options)


# Adding a rule is one line.
RULES: dict[str, RuleEntry] = {
    "bptt": RuleEntry("BPTT", {}),
    "bptt_checkpoint": RuleEntry("BPTT", {"checkpoint": True}),
    "ostl": RuleEntry("OSTL", {}),
    "rtrl": RuleEntry("RTRL", {}, model="small"),
    "snap1": RuleEntry("RTRL", {"snap": 1}, model="small"),
    "uoro": RuleEntry("UORO", {}),
    "ottt": RuleEntry("OTTT", {}),
    "otpe": RuleEntry("OTPE", {}),
    "approx_otpe": RuleEntry("ApproxOTPE", {}),
    "eprop": RuleEntry("EProp", {}),
    "ostl_recurrent": RuleEntry("OSTL", {}, model="recurrent"),
    "ottt_conv": RuleEntry("OTTT", {}, model="conv"),
    "ostl_conv": RuleEntry("OSTL", {}, model="conv"),
}


def peak_rss_bytes() -> int:
    """This process's peak resident set size (``ru_maxrss`` is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


# --- child: one measurement -----------------------------------------------------------


def build_model(name: str, key) -> tuple[eqslax.Connect, tuple[int, ...]]:
    """The network `MODELS[name]` describes and the shape of one input step."""
    sizes = MODELS[name]
    if name == "conv":
        channels_in, positions, channels, kernel, n_out = sizes
        keys = jax.random.split(key, 2)
        conv = eqx.nn.Conv1d(channels_in, channels, kernel, padding=kernel // 2, key=keys[0])
        conv = eqx.tree_at(lambda m: m.weight, conv, conv.weight * 3.0)
        hidden = channels * positions
        readout = eqx.nn.Linear(hidden, n_out, key=keys[1])
        readout = eqx.tree_at(lambda m: m.weight, readout, readout.weight * 3.0)
        layers = [conv, eqslax.LIF((channels, positions)), eqslax.Flatten((channels, positions))]
        shape = (channels_in, positions)
        return eqslax.Connect([*layers, readout, eqslax.LI(n_out)], in_shape=shape), shape
    keys = jax.random.split(key, 2)
    model = eqslax.feedforward(sizes, key=keys[0], readout="li")
    if name == "recurrent":
        layers = list(model.layers)
        layers[1] = eqslax.Recurrent(layers[1], key=keys[1])
        model = eqslax.Connect(layers)
    return model, (sizes[0],)


def _problem(entry: RuleEntry, length: int, batch: int, seed: int):
    """The model and a batch of Bernoulli input spikes with random labels."""
    model_key, input_key, label_key = jax.random.split(jax.random.key(seed), 3)
    model, shape = build_model(entry.model, model_key)
    dtype = jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_inexact_array))[0].dtype
    xs = jax.random.bernoulli(input_key, 0.2, (batch, length, *shape)).astype(dtype)
    ys = jax.random.randint(label_key, (batch,), 0, MODELS[entry.model][-1])
    return model, jax.block_until_ready(xs), jax.block_until_ready(ys)


def xla_memory(fn: Callable, model, *args) -> dict[str, int] | None:
    """XLA's buffer sizes for ``jax.jit(fn)(model, *args)`` (``None`` when the backend
    does not report them): ``argument``, ``output``, ``temp``, ``alias`` and ``total``."""
    params, static = eqx.partition(model, eqx.is_array)
    jitted = jax.jit(lambda params, *args: fn(eqx.combine(params, static), *args))
    try:
        stats = jitted.lower(params, *args).compile().memory_analysis()
    except Exception:  # not every backend reports it
        return None
    if stats is None:
        return None
    out = {
        name: int(getattr(stats, f"{name}_size_in_bytes"))
        for name in ("argument", "output", "temp", "alias")
    }
    out["total"] = out["argument"] + out["output"] + out["temp"] - out["alias"]
    return out


def child(rule_name: str, length: int, batch: int, repeats: int, seed: int) -> dict[str, Any]:
    """One measurement, in this (fresh) process."""
    entry = RULES[rule_name]
    rule = entry.make()
    loss = eqslax.PerStep()
    model, xs, ys = _problem(entry, length, batch, seed)
    baseline = peak_rss_bytes()
    jax.block_until_ready(rule.grad(model, loss, xs, ys))
    peak = peak_rss_bytes()
    device_stats = jax.devices()[0].memory_stats() or {}
    result: dict[str, Any] = {
        "rule": rule_name,
        "model": entry.model,
        "sizes": MODELS[entry.model],
        "length": length,
        "batch": batch,
        "online": isinstance(rule, eqslax.AbstractOnlineRule),
        "rss_baseline_bytes": baseline,
        "rss_peak_bytes": peak,
        "rss_growth_bytes": peak - baseline,
        "device_peak_bytes": device_stats.get("peak_bytes_in_use"),
    }
    result["trace_traffic_bytes"] = trace_traffic(rule, model, xs)
    forward = eqslax_forward()
    # The computation rule.grad compiles, and the plain forward pass on the same batch:
    # both hold the time-major copy of ``xs`` and the stacked outputs, O(T) for every
    # rule; their difference is the memory the learning rule itself adds.
    update = lambda model, xs, ys: rule.update(model, rule.init(model), loss, xs, ys)
    result["xla"] = xla_memory(update, model, xs, ys)
    # `grad` alone: `update` also returns the per-step outputs (O(T)); without them XLA
    # keeps only what the rule itself carries.
    grad = lambda model, xs, ys: rule.grad(model, loss, xs, ys)
    result["xla_grad_temp"] = (xla_memory(grad, model, xs, ys) or {}).get("temp")
    result["xla_forward"] = xla_memory(forward, model, xs)
    if result["xla"] and result["xla_forward"]:
        result["rule_temp_bytes"] = result["xla"]["temp"] - result["xla_forward"]["temp"]
    else:
        result["rule_temp_bytes"] = None
    calls = {
        "grad": lambda: rule.grad(model, loss, xs, ys),
        "forward": lambda: forward(model, xs),
    }
    if rule_name in FLOORS and entry.model == "medium":
        calls["floor"] = _floor(rule_name, rule, model, loss, xs, ys, result)
    timings = time_interleaved(calls, repeats)
    if "floor" in timings:
        result["floor_s"] = timings["floor"]["median_s"]
        result["vs_floor"] = timings["grad"]["median_s"] / timings["floor"]["median_s"]
        result["vs_floor_cpu"] = timings["grad"]["cpu_s"] / timings["floor"]["cpu_s"]
        result["vs_floor_paired"] = statistics.median(
            g / f for g, f in zip(timings["grad"]["runs_s"], timings["floor"]["runs_s"])
        )
    result["grad_s"] = timings["grad"]["median_s"]
    result["forward_s"] = timings["forward"]["median_s"]
    result["ms_per_step"] = 1e3 * result["grad_s"] / length
    result["forward_ms_per_step"] = 1e3 * result["forward_s"] / length
    result["step_cost_vs_forward"] = result["grad_s"] / result["forward_s"]
    result["step_cost_vs_forward_cpu"] = timings["grad"]["cpu_s"] / timings["forward"]["cpu_s"]
    return result


def trace_traffic(rule, model, xs) -> int | None:
    """Bytes of an online rule's traces that one step of the batch reads and writes:
    twice their size (`None` for a rule without traces)."""
    if not isinstance(rule, eqslax.AbstractOnlineRule):
        return None
    traces = jax.eval_shape(lambda x: rule.start(model, x)[1], xs[0, 0])
    size = sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree_util.tree_leaves(traces))
    return 2 * xs.shape[0] * size


def _floor(rule_name, rule, model, loss, xs, ys, result) -> Callable:
    """The hand-written floor of `rule_name`, checked against eqslax's gradient first
    (largest relative difference per parameter in `result["floor_agreement"]`), its XLA
    memory in `result["floor_xla"]`; returns the zero-argument call to time."""
    floor, net = FLOORS[rule_name], network(model)
    expected = as_tuple(rule.grad(model, loss, xs, ys))
    got = floor(net, xs, ys)
    result["floor_agreement"] = max(
        float(jnp.max(jnp.abs(a - b)) / jnp.maximum(jnp.max(jnp.abs(b)), 1e-30))
        for a, b in zip(got, expected)
    )
    stats = floor.lower(net, xs, ys).compile().memory_analysis()
    result["floor_xla_temp"] = None if stats is None else int(stats.temp_size_in_bytes)
    return lambda: floor(net, xs, ys)


def eqslax_forward() -> Callable:
    """A plain batched forward pass, ``(model, xs) -> spikes``, jitted."""
    return eqx.filter_jit(lambda model, xs: jax.vmap(lambda x: eqslax.simulate(model, x)[1])(xs))


# --- parent: one subprocess per measurement ------------------------------------------


def _x64_enabled() -> bool:
    return bool(jax.config.jax_enable_x64)


def measure(rule: str, length: int, args: argparse.Namespace) -> dict[str, Any]:
    command = [
        sys.executable, "-m", "benchmarks.memory", "--child",
        "--rules", rule, "--lengths", str(length), "--batch", str(args.batch),
        "--repeats", str(args.repeats), "--seed", str(args.seed),
    ]  # fmt: skip
    if args.x64 or _x64_enabled():
        command.append("--x64")
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))
    )
    done = subprocess.run(
        command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=args.timeout
    )
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :])
    tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
    return {"rule": rule, "length": length, "error": f"exit {done.returncode}: " + " | ".join(tail)}


def _measured(rows, rule):
    done = (r for r in rows if r["rule"] == rule and "error" not in r)
    return sorted(done, key=lambda r: r["length"])


def _ratio(a, b):
    return None if a is None or b is None or b <= 0 else a / b


def summarise(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per rule: how memory grows from the shortest to the longest sequence, and the
    cost of a step relative to a forward step at the longest one."""
    out = []
    for rule in dict.fromkeys(r["rule"] for r in rows):
        done = _measured(rows, rule)
        if not done:
            continue
        short, long = done[0], done[-1]
        out.append(
            {
                "rule": rule,
                "online": long["online"],
                "lengths": (short["length"], long["length"]),
                "rule_temp_ratio": _ratio(long["rule_temp_bytes"], short["rule_temp_bytes"]),
                "xla_temp_ratio": _ratio(
                    (long["xla"] or {}).get("temp"), (short["xla"] or {}).get("temp")
                ),
                "grad_temp_ratio": _ratio(long.get("xla_grad_temp"), short.get("xla_grad_temp")),
                "rss_peak_ratio": long["rss_peak_bytes"] / short["rss_peak_bytes"],
                "step_cost_vs_forward": long["step_cost_vs_forward"],
                "step_cost_vs_forward_cpu": long["step_cost_vs_forward_cpu"],
                "vs_floor_paired": long.get("vs_floor_paired"),
                "floor_xla_temp_ratio": _ratio(
                    long.get("floor_xla_temp"), short.get("floor_xla_temp")
                ),
            }
        )
    return out


MB = 2**20


def _mb(value):
    return "n/a" if value is None else value / MB


def _or_na(value):
    return "n/a" if value is None else value


def tables(rows, summary) -> str:
    detail_headers = (
        "rule", "model", "T", "peak RSS MB", "RSS growth MB", "XLA temp MB",
        "rule's own temp MB", "grad XLA temp MB", "ms/step", "x forward step",
        "x forward step (CPU)", "x floor (paired)", "x floor (CPU)", "floor XLA temp MB",
        "trace traffic MB/step",
    )  # fmt: skip
    detail = [
        (r["rule"], "error", r["length"], r["error"], *[""] * 11)
        if "error" in r
        else (
            r["rule"],
            r["model"],
            r["length"],
            _mb(r["rss_peak_bytes"]),
            _mb(r["rss_growth_bytes"]),
            _mb((r["xla"] or {}).get("temp")),
            _mb(r["rule_temp_bytes"]),
            _mb(r.get("xla_grad_temp")),
            r["ms_per_step"],
            r["step_cost_vs_forward"],
            r["step_cost_vs_forward_cpu"],
            _or_na(r.get("vs_floor_paired")),
            _or_na(r.get("vs_floor_cpu")),
            _mb(r.get("floor_xla_temp")),
            _mb(r.get("trace_traffic_bytes")),
        )  # fmt: skip
        for r in rows
    ]
    overview_headers = (
        "rule", "online", "T range", "rule's own temp T_max/T_min", "XLA temp T_max/T_min",
        "grad XLA temp T_max/T_min", "peak RSS T_max/T_min", "step x forward",
        "step x forward (CPU)", "x floor (paired)", "floor XLA temp T_max/T_min",
    )  # fmt: skip
    overview = [
        (
            s["rule"],
            "yes" if s["online"] else "no",
            "{}-{}".format(*s["lengths"]),
            _or_na(s["rule_temp_ratio"]),
            _or_na(s["xla_temp_ratio"]),
            _or_na(s.get("grad_temp_ratio")),
            s["rss_peak_ratio"],
            s["step_cost_vs_forward"],
            s["step_cost_vs_forward_cpu"],
            _or_na(s.get("vs_floor_paired")),
            _or_na(s.get("floor_xla_temp_ratio")),
        )  # fmt: skip
        for s in summary
    ]
    return (
        markdown_table(detail_headers, detail) + "\n\n" + markdown_table(overview_headers, overview)
    )


def plot(rows, path: str) -> None:
    figure, axes = new_figure(3)
    for rule in dict.fromkeys(r["rule"] for r in rows):
        done = _measured(rows, rule)
        lengths = [r["length"] for r in done]
        own = [r["rule_temp_bytes"] for r in done]
        if None not in own:
            axes[0, 0].plot(lengths, [t / MB for t in own], "o-", label=rule)
        axes[0, 1].plot(lengths, [r["rss_growth_bytes"] / MB for r in done], "o-", label=rule)
        axes[0, 2].plot(lengths, [r["step_cost_vs_forward_cpu"] for r in done], "o-", label=rule)
    titles = (
        "rule's working memory (XLA temp - forward's)",
        "peak RSS growth",
        "step cost / forward step (CPU time)",
    )
    for ax, title, label in zip(axes[0], titles, ("MB", "MB", "ratio")):
        ax.set(title=title, xlabel="sequence length T", ylabel=label)
        ax.legend(fontsize="small")
    axes[0, 2].set_yscale("log")
    figure.tight_layout()
    save_figure(figure, path)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.memory", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--lengths", default="100,500,1000,2000", help="sequence lengths T")
    parser.add_argument(
        "--rules", default=None, help=f"subset of {','.join(RULES)} (default: those eqslax has)"
    )
    parser.add_argument("--batch", type=int, default=32, help="batch size (default 32)")
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed rounds per measurement (default 3)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--jobs", type=int, default=1,
        help="measurements run at once (default 1; more distorts the timings, not the memory)",
    )  # fmt: skip
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per measurement")
    parser.add_argument(
        "--out", default="benchmark_results/memory", help="folder for results.json and PNG"
    )
    parser.add_argument("--x64", action="store_true", help="run in float64")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.lengths = parse_ints(args.lengths, "--lengths")
    available = [name for name, entry in RULES.items() if entry.available()]
    args.rules = (
        parse_names(args.rules, "--rules", tuple(RULES)) if args.rules else tuple(available)
    )
    for name in ("batch", "repeats", "jobs"):
        if getattr(args, name) < 1:
            raise ValueError(f"`--{name}` must be >= 1, got {getattr(args, name)}.")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Measure every (rule, length) in its own process; print tables; write
    ``results.json`` and ``memory.png`` into ``--out``."""
    args = parse_args(argv)
    if args.x64:
        jax.config.update("jax_enable_x64", True)
    if args.child:
        result = child(args.rules[0], args.lengths[0], args.batch, args.repeats, args.seed)
        print(RESULT_PREFIX + json.dumps(result), flush=True)
        return result
    print(f"devices: {jax.devices()}", flush=True)
    skipped = {
        rule: f"eqslax.{RULES[rule].attribute} not available"
        for rule in args.rules
        if not RULES[rule].available()
    }
    tasks = [
        (rule, length) for rule in args.rules if rule not in skipped for length in args.lengths
    ]

    def run(task):
        row = measure(*task, args)
        print(f"{task[0]} T={task[1]}: " + ("error" if "error" in row else "done"), flush=True)
        return row

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        rows = list(pool.map(run, tasks))
    summary = summarise(rows)
    results = {
        "benchmark": "memory",
        "command": "python -m benchmarks.memory "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "config": dict(vars(args)),
        "models": MODELS,
        "device": device_note(),
        "rows": rows,
        "summary": summary,
        "skipped": skipped,
    }
    print(tables(rows, summary))
    for rule, why in skipped.items():
        print(f"{rule}: skipped ({why})")
    write_json(os.path.join(args.out, "results.json"), results)
    plot(rows, os.path.join(args.out, "memory.png"))
    return results


if __name__ == "__main__":
    main()
