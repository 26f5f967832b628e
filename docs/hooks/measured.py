"""MkDocs hook: tables of measured numbers, rendered from the JSON the scripts wrote.

A page line `<!-- measured: NAME -->` is replaced by the tables of `docs/data/NAME.json`,
written by the script that measured them (its command is stored in the file and shown
with the table). Nothing is copied by hand: to update a page, rerun the command and
replace the JSON. A marker with no renderer, or a JSON file that is missing or lacks a
field, fails the build naming the page and the file.

| NAME | written by |
|---|---|
| `bptt_speed` | `python -m benchmarks.bptt_speed --out DIR` (`DIR/results.json`) |
| `memory` | `python -m benchmarks.memory --out DIR` (`DIR/results.json`) |
| `distributed` | `python -m benchmarks.distributed --out DIR` (`DIR/results.json`) |
| `gradient_similarity_online` | `python examples/gradient_similarity.py online --json PATH` |
| `gradient_similarity_approximate` | the same with `approximate` |
| `mackey_glass` | `python examples/mackey_glass.py --json PATH` |
| `digits` | `python examples/digits.py --json PATH` |
| `learnable_delays` | `python examples/learnable_delays.py --json PATH` |
| `compare_*` | `python -m eqslax compare ... --out DIR` (`DIR/results.json`) |
| `train` | every `train_*.json`: `python -m eqslax train ... --out DIR` (`DIR/summary.json`) |
"""

import json
import re
import sys
from pathlib import Path

import numpy as np

MARKER = re.compile(r"^<!-- measured: ([A-Za-z0-9_-]+) -->$", re.M)


def _command(data) -> str:
    return f"Measured with `{data['command']}`."


def _device(data) -> str:
    device = data.get("device") or {}
    if isinstance(device, dict):
        shown = ", ".join(f"{k} {v}" for k, v in sorted(device.items()) if k != "devices")
        return f"Machine: {shown}." if shown else ""
    return f"Machine: {device}."


def bptt_speed(data) -> str:
    from benchmarks.bptt_speed import sweep_table, table

    lines = [_command(data), "", table(data["rows"])]
    sweep = sweep_table(data["rows"])
    if sweep:
        lines += ["", "Every unroll factor of the layer-wise schedule, fwd+bwd seconds:", "", sweep]
    lines += ["", _device(data)]
    if not data["agreement_passed"]:
        lines += ["", "!!! warning", "    eqslax and the hand scan disagreed in this run."]
    return "\n".join(lines)


def memory(data) -> str:
    from benchmarks.memory import tables

    return "\n".join([_command(data), "", tables(data["rows"], data["summary"]), "", _device(data)])


def distributed(data) -> str:
    from benchmarks.distributed import table

    lines = [
        _command(data),
        "",
        table(data["rows"]),
        "",
        _device(data),
        "",
        f"Note: {data['note']}.",
    ]
    return "\n".join(lines)


def gradient_similarity_online(data) -> str:
    rows = ["| rule | global | " + " | ".join(data["layers"]) + " |"]
    rows.append("|---|---|" + "---|" * len(data["layers"]))
    for name, c in data["rules"].items():
        cells = [f"{c['global']:.6f}", *(f"{v:.6f}" for v in c["layers"])]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    error = data["rules"]["RTRL"]["max_relative_error"]
    return "\n".join(
        [_command(data), "", *rows, "", f"RTRL's largest relative error to BPTT: {error:.2e}."]
    )


def gradient_similarity_approximate(data) -> str:
    lines = [_command(data)]
    for encoding, title in (("time", "T-Randman"), ("rate", "R-Randman")):
        lines += ["", f"{title} ({data['seeds']} seeds, mean ± std)", ""]
        lines.append("| rule | " + " | ".join(data["columns"]) + " |")
        lines.append("|---|" + "---|" * len(data["columns"]))
        for name, values in data[encoding].items():
            v = np.asarray(values)
            cells = [f"{m:.4f} ± {s:.4f}" for m, s in zip(v.mean(0), v.std(0))]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _interval(value) -> str:
    half = value["ci95_half_width"]
    return f"{value['mean']:.3f}" + ("" if half is None else f" ± {half:.3f}")


def mackey_glass(data) -> str:
    lines = [_command(data), "", f"Mean ± 95 % interval over {data['seeds']} seeds.", ""]
    lines += ["| rule | lr | test R² | test MSE | updates | time / epoch (s) |"]
    lines += ["|---|---|---|---|---|---|"]
    for name, row in data["rules"].items():
        cells = [name, f"{row['lr']:g}", _interval(row["test_r2"]), _interval(row["test_mse"])]
        cells += [str(row["updates"]), f"{row['time_per_epoch_s']:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def digits(data) -> str:
    lines = [_command(data), "", f"Mean ± 95 % interval over {data['seeds']} seeds.", ""]
    lines += ["| rule | lr | test accuracy | updates | time / epoch (s) |"]
    lines += ["|---|---|---|---|---|"]
    for name, row in data["rules"].items():
        cells = [name, f"{row['lr']:g}", _interval(row["test_accuracy"]), str(row["updates"])]
        cells.append(f"{row['time_per_epoch_s']:.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    loader = data["loader"]
    times = loader["epoch_time_s"]
    lines += ["", "| one BPTT epoch with `fit` | seconds |", "|---|---|"]
    lines += [f"| prestaged on the device ({loader['device']}) | {times['prestaged']:.3f} |"]
    lines += [f"| streamed from the host | {times['streamed']:.3f} |"]
    if "prefetched" in times:
        lines += [f"| streamed, 2 batches prefetched | {times['prefetched']:.3f} |"]
    return "\n".join(lines)


def compare(data) -> str:
    """`eqslax compare`'s results.json: one row per rule (first seed's cosines).

    With several seeds the metric is the mean with its 95 % confidence half-width, a
    column gives each rule's paired difference from the first rule with its verdict, and
    the run's own summary sentence follows the table.
    """
    rules = data["rules"]
    metric = data["metric"]
    reference = next(iter(rules))
    versus = {p["b"]: p for p in data.get("pairwise", []) if p["a"] == reference}
    layers = sorted(
        {n for r in rules.values() for n in (r["initial_similarity"] or {}).get("layers", {})}
    )
    header = ["rule", "mode", f"test {metric}"]
    if versus:
        header.append(f"vs {reference}, paired (95 % CI)")
    header += ["time / epoch (s)", "peak memory (MiB)"]
    header += ["global cos to BPTT", *(f"cos {n}" for n in layers)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, rule in rules.items():
        memory = rule["peak_memory_bytes"]
        similarity = rule["initial_similarity"]
        spread = rule.get(f"test_{metric}")
        if spread is not None and spread["n"] > 1:
            shown = f"{spread['mean']:.3f} ± {spread['ci95_half_width']:.3f} ({spread['n']} seeds)"
        else:
            shown = f"{rule[f'final_test_{metric}']:.3f}"
        cells = [name, rule["mode"], shown]
        if versus:
            pair = versus.get(name)
            if pair is None:
                cells.append("reference")
            else:
                gap = pair["difference"]  # reference minus this rule
                shown = f"{-gap['mean']:+.3f} ± {gap['ci95_half_width']:.3f}"
                cells.append(f"{shown}: {pair['verdict']}")
        cells += [
            f"{rule['time_per_epoch_s']:.2f}",
            "n/a" if memory is None else f"{memory / 2**20:.1f}",
        ]
        if similarity is None:
            cells += ["1 (reference)"] + ["1"] * len(layers)
        else:
            cells.append(f"{similarity['global']['cosine']:.4f}")
            cells += [f"{similarity['layers'][n]['cosine']:.4f}" for n in layers]
        lines.append("| " + " | ".join(cells) + " |")
    if data.get("summary"):
        lines += ["", data["summary"]]
    return "\n".join(lines)


def train(folder: Path) -> str:
    """One row per `eqslax train` summary (`docs/data/train_*.json`)."""
    paths = sorted(folder.glob("train_*.json"))
    if not paths:
        raise FileNotFoundError(f"no {folder}/train_*.json")
    lines = ["| command | test accuracy | wall time (s) |", "|---|---|---|"]
    for path in paths:
        run = json.loads(path.read_text())
        command = (
            f"python -m eqslax train --rule {run['rule']} --encoding {run['encoding']} "
            f"--epochs {run['epochs']}"
        )
        lines.append(
            f"| `{command}` | {run['final_test_accuracy']:.3f} | {run['wall_time_s']:.0f} |"
        )
    return "\n".join(lines)


def learnable_delays(data) -> str:
    lines = [_command(data), ""]
    lines += [
        f"{data['seeds']} seeds, {data['epochs']} epochs; chance is {data['chance']:.2f}.",
        "",
    ]
    lines += ["| delays | test accuracy (mean ± std) | per seed | time / run (s) |"]
    lines += ["|---|---|---|---|"]
    for name, row in data["variants"].items():
        acc = row["test_accuracy"]
        spread = "" if acc["std"] is None else f" ± {acc['std']:.3f}"
        seeds = ", ".join(f"{v:.3f}" for v in acc["per_seed"])
        lines.append(f"| {name} | {acc['mean']:.3f}{spread} | {seeds} | {row['seconds']:.1f} |")
    return "\n".join(lines)


RENDERERS = {
    "bptt_speed": bptt_speed,
    "memory": memory,
    "distributed": distributed,
    "gradient_similarity_online": gradient_similarity_online,
    "gradient_similarity_approximate": gradient_similarity_approximate,
    "mackey_glass": mackey_glass,
    "digits": digits,
    "learnable_delays": learnable_delays,
}


def render(name: str, folder: Path, page: str) -> str:
    if name == "train":
        try:
            return train(folder)
        except (OSError, KeyError, TypeError, ValueError) as error:
            raise RuntimeError(f"{page}: `<!-- measured: train -->`: {error!r}") from error
    renderer = RENDERERS.get(name) or (compare if name.startswith("compare_") else None)
    if renderer is None:
        raise RuntimeError(f"{page}: no renderer for `<!-- measured: {name} -->`")
    path = folder / f"{name}.json"
    if not path.is_file():
        raise RuntimeError(f"{page}: `<!-- measured: {name} -->` needs {path}, which is missing")
    try:
        return renderer(json.loads(path.read_text()))
    except (KeyError, TypeError, ValueError) as error:
        raise RuntimeError(f"{page}: {path} lacks what the table needs: {error!r}") from error


def on_config(config):
    # the renderers reuse the benchmark scripts' own table code (`benchmarks/`, not installed)
    root = str(Path(config["config_file_path"]).resolve().parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    return config


def on_page_markdown(markdown, page, config, files):
    folder = Path(config["docs_dir"]) / "data"
    return MARKER.sub(lambda m: render(m.group(1), folder, page.file.src_uri), markdown)
