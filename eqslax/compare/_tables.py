"""The report's tables and its one-paragraph summary, from a `CompareResult`."""

import itertools

import numpy as np

from .._metrics import metric_names
from ._stats import mean_ci, paired_difference

REFERENCE = "bptt"


def reference_of(results) -> str:
    return REFERENCE if REFERENCE in results.runs else results.rules[0]


def cosines(run):
    """Per seed, the initial global cosine to BPTT (or `None` without a comparison)."""
    values = [s.initial_similarity for s in run.seeds]
    if any(v is None for v in values):
        return None
    return [float(v.global_cosine) for v in values]


def _memory(run) -> str:
    if run.peak_memory_bytes is None:
        return "n/a"
    # one device's estimate, for the seeds that device trains at once
    per = run.peak_memory_bytes / (len(run.seeds) / run.devices if run.vmapped else 1)
    return f"{per / 2**20:.2f}"


def _gap(results, name: str) -> str:
    ref = reference_of(results)
    if name == ref:
        return "reference"
    return paired_difference(results.values(name), results.values(ref)).format()


def test_metrics(results) -> tuple[str, ...]:
    """The loss's task metrics, the ranking metric first (`accuracy`; `r2`, `mse`)."""
    names = metric_names(results.loss)
    return (results.metric, *(m for m in names if m != results.metric))


def main_table(results) -> str:
    metrics = test_metrics(results)
    header = [
        "rule",
        "driver",
        "lr",
        f"test {metrics[0]}",
        f"gap to {reference_of(results)} (paired)",
        *(f"test {m}" for m in metrics[1:]),
        "train loss",
        "updates",
        "forward steps",
        "backward steps",
        "compile (s)",
        "time / epoch (s)",
        "memory / seed (MiB)",
        "cos to BPTT at init",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, run in results.runs.items():
        cos = cosines(run)
        row = [
            name,
            run.driver,
            f"{run.lr:g}",
            results.interval(name).format(),
            _gap(results, name),
            *(results.interval(name, f"test_{m}").format(4) for m in metrics[1:]),
            results.interval(name, "train_loss").format(),
            str(run.updates),
            str(run.forward_steps),
            str(run.backward_steps),
            f"{run.compile_time_s:.2f}",
            f"{run.time_per_epoch_s:.3f}",
            _memory(run),
            "1 (reference)"
            if cos is None and name == REFERENCE
            else ("n/a" if cos is None else mean_ci(cos).format(4)),
        ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def pairs(results, key: str | None = None):
    """Every pair of rules: (a, b, interval of a - b paired by seed, verdict), of `key`
    (default: the ranking metric `results.key`)."""
    out = []
    for a, b in itertools.combinations(results.rules, 2):
        diff = paired_difference(results.values(a, key), results.values(b, key))
        if np.isnan(diff.half_width):
            verdict = "one seed: no interval"
        elif diff.contains_zero():
            verdict = "not distinguishable"
        else:
            verdict = f"{a} higher" if diff.mean > 0 else f"{b} higher"
        out.append((a, b, diff, verdict))
    return out


def pairwise_table(results) -> str:
    lines = [
        f"| rule A | rule B | A - B test {results.metric} (95 % CI, paired by seed) | verdict |",
        "|---|---|---|---|",
    ]
    for a, b, diff, verdict in pairs(results):
        lines.append(f"| {a} | {b} | {diff.format()} | {verdict} |")
    return "\n".join(lines)


def summary(results) -> str:
    """One paragraph: each rule's gap to the reference and whether it is resolved."""
    ref = reference_of(results)
    n = len(results.seeds)
    metric = results.metric
    parts = [
        f"Over {n} seed(s), {ref} reaches a test {metric} of "
        f"{results.interval(ref).format()} (mean ± 95 % CI)."
    ]
    for name in results.rules:
        if name == ref:
            continue
        diff = paired_difference(results.values(name), results.values(ref))
        if np.isnan(diff.half_width):
            parts.append(f"{name} differs from {ref} by {diff.mean:+.3f} (one seed: no interval).")
        elif diff.contains_zero():
            parts.append(
                f"{name} is within {diff.mean:+.3f} ± {diff.half_width:.3f} of {ref}: "
                "not distinguishable with these seeds."
            )
        else:
            side = "above" if diff.mean > 0 else "below"
            parts.append(f"{name} is {side} {ref} by {abs(diff.mean):.3f} ± {diff.half_width:.3f}.")
    fastest = min(results.runs.values(), key=lambda r: r.time_per_epoch_s)
    parts.append(
        f"Fastest per epoch (compile excluded): {fastest.name} ({fastest.time_per_epoch_s:.3f} s)."
    )
    return " ".join(parts)


def neurobench_table(metrics: dict) -> str:
    lines = [
        "| rule | accuracy | activation sparsity | effective ACs | effective MACs | dense ops "
        "| membrane updates |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, m in metrics.items():
        ops = m["SynapticOperations"]
        lines.append(
            f"| {name} | {m['ClassificationAccuracy']:.3f} | {m['ActivationSparsity']:.3f} | "
            f"{ops['Effective_ACs']:.1f} | {ops['Effective_MACs']:.1f} | {ops['Dense']:.1f} | "
            f"{m['MembraneUpdates']:.1f} |"
        )
    return "\n".join(lines)
