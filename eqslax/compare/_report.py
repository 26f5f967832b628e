"""Writing a comparison to disk: PNG plots, `report.md`, the same as a self-contained
`report.html`, and `results.json` (schema in `docs/compare.md`, versioned by
`schema_version`)."""

import dataclasses
import json
import os

import numpy as np

from .._checkpoint import atomic_write
from ._api import SCHEMA_VERSION, CompareResult
from ._html import markdown_to_html
from ._stats import mean_ci
from ._tables import cosines, main_table, neurobench_table, pairs, pairwise_table, summary


def _floats(values):
    return [float(v) for v in np.asarray(values).ravel()]


def _neurobench(results: CompareResult) -> dict:
    """NeuroBench metrics of each rule's first-seed model, for class labels per sequence
    (NeuroBench's classification accuracy) in arrays; `{}` otherwise."""
    from ..neurobench import neurobench_metrics

    data = results.data
    if results.metric != "accuracy" or not hasattr(data, "test_y") or np.ndim(data.test_y) != 1:
        return {}
    try:
        return {
            name: neurobench_metrics(run.seeds[0].model, data.test_x, data.test_y)
            for name, run in results.runs.items()
        }
    except (TypeError, ValueError, AttributeError):  # a model NeuroBench cannot read
        return {}


def _seed_json(seed) -> dict:
    return {
        "seed": seed.seed,
        "final": seed.final,
        "history": seed.history,
        "similarity_steps": seed.similarity_steps,
        "similarity_curves": seed.similarity_curves,
        "initial_similarity": None
        if seed.initial_similarity is None
        else seed.initial_similarity.to_dict(),
    }


def _rule_json(results: CompareResult, name: str, neurobench: dict) -> dict:
    run = results.runs[name]
    cos = cosines(run)
    return {
        "driver": run.driver,
        "mode": run.driver,
        "description": run.description,
        "lr": run.lr,
        "tuned_lr": results.tuned_lr.get(name),
        "vmapped_seeds": run.vmapped,
        "updates_per_batch": run.updates_per_batch,
        "batches": run.batches,
        "updates": run.updates,
        "forward_time_steps": run.forward_steps,
        "backward_time_steps": run.backward_steps,
        "compile_time_s": run.compile_time_s,
        "time_per_epoch_s": run.time_per_epoch_s,
        "train_time_s": run.train_time_s,
        "peak_memory_bytes": run.peak_memory_bytes,
        "devices": run.devices,
        f"final_{results.key}": float(np.mean(results.values(name))),
        **{
            key: results.interval(name, key).to_dict()
            for key in run.seeds[0].final
            if key.startswith("test_") or key == "train_loss"
        },
        "initial_global_cosine": None if cos is None else mean_ci(cos).to_dict(),
        "history": run.seeds[0].history,
        "similarity_steps": run.seeds[0].similarity_steps,
        "similarity_curves": run.seeds[0].similarity_curves,
        "initial_similarity": _seed_json(run.seeds[0])["initial_similarity"],
        "neurobench": neurobench.get(name),
        "seeds": [_seed_json(s) for s in run.seeds],
    }


def results_json(results: CompareResult, land: dict, files: dict, config, neurobench) -> dict:
    return {
        "schema_version": SCHEMA_VERSION,
        "config": config,
        "seeds": list(results.seeds),
        "shared_initialisation": results.shared_init,
        "budget": results.budget,
        "epochs": results.epochs,
        "batch_size": results.batch_size,
        "metric": results.metric,
        "rules": {name: _rule_json(results, name, neurobench) for name in results.rules},
        "pairwise": [
            {"a": a, "b": b, "difference": d.to_dict(), "verdict": v}
            for a, b, d, v in pairs(results)
        ],
        "summary": summary(results),
        "landscape": {
            "explained_variance": _floats(land["explained_variance"]),
            "alphas": _floats(land["alphas"]),
            "betas": _floats(land["betas"]),
            "surface": np.asarray(land["surface"]).tolist(),
        },
        "figures": files,
    }


def _budget_text(results: CompareResult) -> str:
    if results.budget == "updates":
        counts = {run.updates for run in results.runs.values()}
        return (
            f"every rule makes the same number of optimiser updates ({', '.join(map(str, counts))})"
        )
    return f"every rule trains {results.epochs} epochs"


def write_report(results: CompareResult, out: str, config=None, grid: int = 15) -> str:
    """Write every plot, `report.md`, `report.html` (the same page with the plots
    embedded, one file to share) and `results.json` into `out`; return `report.md`'s
    path. `config` (a dataclass or a dict) is stored in `results.json` as given."""
    from ._plots import write_figures

    if dataclasses.is_dataclass(config):
        config = dataclasses.asdict(config)
    os.makedirs(out, exist_ok=True)
    files, land = write_figures(results, out, grid)
    neurobench = _neurobench(results)
    numbers = results_json(results, land, files, config, neurobench)
    atomic_write(os.path.join(out, "results.json"), json.dumps(numbers, indent=2).encode())
    images = "\n".join(f"![{name}]({path})" for name, path in files.items())
    init = (
        "every seed starts from the same initial model"
        if results.shared_init
        else "seed s draws its own initial model; every rule starts from the same one"
    )
    tuned = "".join(
        f"\n- {name}: learning rates {t['grid']} scored validation {t['metric']} "
        f"{[round(v, 3) for v in t['validation']]}; chosen {t['chosen']:g}."
        for name, t in results.tuned_lr.items()
    )
    nb = (
        "\nNeuroBench metrics of each rule's first-seed model on the test split "
        f"(per sample):\n\n{neurobench_table(neurobench)}\n"
        if neurobench
        else ""
    )
    report = f"""# eqslax compare

{results.description}

Seeds {", ".join(map(str, results.seeds))}: {init}, and each seed fixes the data order.
Budget: {_budget_text(results)}, batch {results.batch_size}. Numbers are mean ± 95 %
confidence interval (Student t over seeds). Compilation is done once per rule before its
timed epochs and reported on its own; time per epoch is the median over epochs of the
training steps alone (for vmapped seeds, all seeds at once). Memory is XLA's estimate
(arguments plus temporaries) for the compiled step on one device, divided by the number
of seeds that device trains at once. "Cos to BPTT" is the cosine similarity of the rule's
gradient to BPTT's at the initial parameters on the first batch.{tuned}

## Summary

{summary(results)}

## Results

{main_table(results)}

## Rule against rule

{pairwise_table(results)}
{nb}
## Figures

Loss landscape: PCA plane of the first seed's trajectories around `{results.rules[0]}`'s final
model, explained variance {", ".join(f"{v:.3f}" for v in _floats(land["explained_variance"]))}.

{images}
"""
    path = os.path.join(out, "report.md")
    atomic_write(path, report.encode())
    page = markdown_to_html(report, out)
    atomic_write(os.path.join(out, "report.html"), page.encode())
    return path
