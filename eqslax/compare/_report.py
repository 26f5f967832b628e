"""Writing a comparison to disk: PNG plots, ``report.md`` and ``results.json``."""

import dataclasses
import json
import os

import numpy as np

from .._checkpoint import atomic_write
from .._neurons import AbstractSpikingPopulation
from ._registry import RULES
from ._run import landscape_of, recording_of


def _floats(values):
    return [float(v) for v in np.asarray(values).ravel()]


def _plots(results: dict, out: str) -> tuple[dict[str, str], dict]:
    import matplotlib.pyplot as plt

    from .. import plot

    runs = results["runs"]
    files = {}

    def save(fig, name):
        plot.save_figure(fig, os.path.join(out, name), dpi=110)
        plt.close(fig)
        files[name.removesuffix(".png")] = name

    sample, rec, model = recording_of(results)
    spiking = [isinstance(layer, AbstractSpikingPopulation) for layer in model.layers]
    save(plot.network_raster(rec, input=sample, spiking=spiking), "raster.png")
    hidden = next(k for k, s in enumerate(spiking) if s)
    threshold = float(np.max(np.asarray(model.layers[hidden].threshold)))
    save(plot.membrane(rec.states.layers[hidden].v, threshold, neurons=slice(0, 8)), "membrane.png")
    save(plot.training_curves({name: run["history"] for name, run in runs.items()}), "training.png")
    curves = {
        name: run["similarity_curves"] for name, run in runs.items() if run["similarity_curves"]
    }
    if curves:
        steps = next(runs[name]["similarity_steps"] for name in curves)
        save(plot.similarity_curves(steps, curves), "similarity.png")
    land = landscape_of(results)
    save(
        plot.landscape(
            land["alphas"],
            land["betas"],
            land["surface"],
            land["coordinates"],
            explained_variance=land["explained_variance"],
        ),
        "landscape.png",
    )
    return files, land


def _table(results: dict) -> str:
    runs, initial = results["runs"], results["initial_similarity"]
    layer_names = next(iter(initial.values())).layer_names if initial else ()
    header = [
        "rule",
        "mode",
        "test accuracy",
        "time / epoch (s)",
        "peak memory (MiB)",
        "global cos",
    ]
    header += [f"cos {name}" for name in layer_names]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, run in runs.items():
        memory = run["peak_memory_bytes"]
        row = [
            name,
            run["mode"],
            f"{run['history']['test_accuracy'][-1]:.3f}",
            f"{run['time_per_epoch_s']:.2f}",
            "n/a" if memory is None else f"{memory / 2**20:.1f}",
        ]
        if name in initial:
            comparison = initial[name]
            row.append(f"{float(comparison.global_cosine):.4f}")
            row += [f"{float(c):.4f}" for c in comparison.layer_cosine]
        else:
            row += ["1 (reference)"] + ["1"] * len(layer_names)
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def _neurobench_table(results: dict) -> str:
    lines = [
        "| rule | accuracy | activation sparsity | effective ACs | effective MACs | dense ops "
        "| membrane updates |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, run in results["runs"].items():
        m = run["neurobench"]
        ops = m["SynapticOperations"]
        lines.append(
            f"| {name} | {m['ClassificationAccuracy']:.3f} | {m['ActivationSparsity']:.3f} | "
            f"{ops['Effective_ACs']:.1f} | {ops['Effective_MACs']:.1f} | {ops['Dense']:.1f} | "
            f"{m['MembraneUpdates']:.1f} |"
        )
    return "\n".join(lines)


def write_report(results: dict, out: str) -> str:
    """Write every plot, ``report.md`` and ``results.json`` into ``out``; return the
    report's path."""
    os.makedirs(out, exist_ok=True)
    files, land = _plots(results, out)
    config = results["config"]
    runs = results["runs"]
    numbers = {
        "config": dataclasses.asdict(config),
        "rules": {
            name: {
                "mode": run["mode"],
                "description": RULES[name][2],
                "final_test_accuracy": run["history"]["test_accuracy"][-1],
                "train_time_s": run["train_time_s"],
                "time_per_epoch_s": run["time_per_epoch_s"],
                "peak_memory_bytes": run["peak_memory_bytes"],
                "neurobench": run["neurobench"],
                "history": run["history"],
                "similarity_steps": run["similarity_steps"],
                "similarity_curves": run["similarity_curves"],
                "initial_similarity": results["initial_similarity"][name].to_dict()
                if name in results["initial_similarity"]
                else None,
            }
            for name, run in runs.items()
        },
        "landscape": {
            "explained_variance": _floats(land["explained_variance"]),
            "alphas": _floats(land["alphas"]),
            "betas": _floats(land["betas"]),
            "surface": np.asarray(land["surface"]).tolist(),
        },
        "figures": files,
    }
    atomic_write(os.path.join(out, "results.json"), json.dumps(numbers, indent=2).encode())
    images = "\n".join(f"![{name}]({path})" for name, path in files.items())
    report = f"""# eqslax compare

Task: Randman, encoding `{config.encoding}`, {config.classes} classes, {config.units} units,
{config.steps} steps; network {config.units}-{config.hidden}-{config.classes} (LIF hidden layer,
leaky-integrator readout), per-step cross-entropy, Adam (lr {config.lr} offline,
{config.online_lr} online), {config.epochs} epochs, batch {config.batch_size}, seed {config.seed}.
Every rule starts from the same initial model. Cosine similarity to BPTT is measured at the
initial parameters on the first training batch; peak memory is XLA's estimate for one
compiled training step (arguments plus temporaries).

{_table(results)}

NeuroBench metrics of each trained model on the test split (per sample):

{_neurobench_table(results)}

Loss landscape: PCA plane of all trajectories around `{config.rules[0]}`'s final model,
explained variance {", ".join(f"{v:.3f}" for v in _floats(land["explained_variance"]))}.

{images}
"""
    path = os.path.join(out, "report.md")
    atomic_write(path, report.encode())
    return path
