"""MkDocs hook: the rule × layer × neuron support matrix, measured when the site is built.

Each cell runs the rule's `grad` on a small random float64 network (a hidden layer of the
given kind, then a leaky-integrator readout) and compares it with BPTT's gradient:

- ✓ exact: every parameter's gradient equals BPTT's to a relative error below 1e-8;
- ≈ approximate: it runs; the cell gives the global cosine similarity to BPTT;
- ✗ refused: the rule raised an error; the cell gives the reason it stated.

Nothing here is written by hand, so the page cannot drift from the code.
"""

import logging
import re
import time

import jax
import jax.numpy as jnp

EXACT = 1e-8


def _hidden_layers(key):
    """Name -> (hidden layer kind, list of modules between input 3 and readout input 4)."""
    import equinox as eqx

    import eqslax

    k1, k2, k3 = jax.random.split(key, 3)
    linear = eqx.nn.Linear(3, 4, key=k1)
    neurons = {
        "LIF": eqslax.LIF(4, decay=0.8),
        "IF": eqslax.IF(4),
        "CuBaLIF": eqslax.CuBaLIF(4),
        "ALIF": eqslax.ALIF(4),
        "LTC": eqslax.LTC(4, key=k3),
        "Izhikevich": eqslax.Izhikevich(4),
    }
    rows = {f"Linear + {name}": ("Linear", [linear, n]) for name, n in neurons.items()}
    rows["Linear + RLIF"] = ("recurrent", [linear, eqslax.RLIF(4, key=k2)])
    if hasattr(eqslax, "Recurrent"):
        rows["Linear + Recurrent(LIF)"] = (
            "recurrent",
            [linear, eqslax.Recurrent(eqslax.LIF(4, decay=0.8), key=k2)],
        )
        rows["Linear + Recurrent(ALIF) (LSNN)"] = (
            "recurrent",
            [linear, eqslax.Recurrent(eqslax.ALIF(4), key=k3)],
        )
    return rows


def models(key):
    """Name -> (layer kind, model) for every row of the matrix."""
    import equinox as eqx

    import eqslax

    k1, k2, k3, k4 = jax.random.split(key, 4)
    rows = {}
    for name, (kind, hidden) in _hidden_layers(k1).items():
        rows[name] = (
            kind,
            eqslax.Connect([*hidden, eqx.nn.Linear(4, 2, key=k2), eqslax.LI(2)]),
        )
    rows["Linear + LIF, cat self-edge"] = (
        "recurrent",
        eqslax.Connect(
            [eqx.nn.Linear(3, 4, key=k2), eqslax.LIF(4), eqx.nn.Linear(4, 2, key=k3), eqslax.LI(2)],
            cat={1: [1]},
            key=k4,
        ),
    )
    readout = [eqx.nn.Linear(4, 2, key=k2), eqslax.LI(2)]
    delay = eqslax.Delay(3, [0, 1, 2])
    rows["Delay + Linear + LIF"] = (
        "delay",
        eqslax.Connect([delay, eqx.nn.Linear(3, 4, key=k3), eqslax.LIF(4), *readout]),
    )
    learnable = eqslax.DCLSDelay(3, 4, 2, key=k4)
    rows["DCLSDelay + LIF"] = ("delay", eqslax.Connect([learnable, eqslax.LIF(4), *readout]))
    conv = eqx.nn.Conv1d(1, 2, kernel_size=2, key=k3)
    rows["Conv1d + LIF"] = (
        "conv",
        eqslax.Connect(
            [
                conv,
                eqslax.LIF((2, 2)),
                eqslax.Flatten((2, 2)),
                eqx.nn.Linear(4, 2, key=k4),
                eqslax.LI(2),
            ],
            in_shape=(1, 3),
        ),
    )
    return rows


def rules():
    """Name -> rule, from the registry `eqslax compare` uses."""
    from eqslax.compare import RULES

    # rules that estimate the gradient of the loss (FPTT changes the objective, STDP is
    # not a gradient rule), with their registry defaults
    return {
        name: entry.make()
        for name, entry in RULES.items()
        if entry.driver in ("offline", "online") and name not in ("stdp",)
    }


def _relative_error(a, b) -> float:
    worst = 0.0
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        scale = float(jnp.max(jnp.abs(y)))
        worst = max(worst, float(jnp.max(jnp.abs(x - y))) / (scale if scale > 0 else 1.0))
    return worst


def first_sentence(message: str) -> str:
    """The first sentence of an error message (not cut at "e.g." or "i.e.")."""
    line = message.split("\n")[0]
    return re.split(r"(?<!e\.g)(?<!i\.e)\. (?=[A-Z`])", line)[0].rstrip(".")


def cell(rule, model, reference, loss, xs, ys) -> tuple[str, str]:
    """`(status, detail)` for one rule on one model."""
    import eqslax.analysis

    try:
        grads = rule.grad(model, loss, xs, ys)
    except (ValueError, TypeError, NotImplementedError) as error:
        return "refused", first_sentence(str(error))
    if _relative_error(grads, reference) < EXACT:
        return "exact", ""
    cosine = float(eqslax.analysis.cosine_similarity(grads, reference).global_cosine)
    return "approximate", f"{cosine:.3f}"


def support_matrix(key=None):
    """`(rule names, [(row name, layer kind, [(status, detail), ...])])`."""
    import eqslax

    with jax.enable_x64(True):
        key = jax.random.key(0) if key is None else key
        kx, ky, km = jax.random.split(key, 3)
        loss = eqslax.PerStep()
        named_rules = rules()
        table = []
        for name, (kind, model) in models(km).items():
            xs = jax.random.uniform(kx, (2, 6, *model.in_shape), jnp.float64) * 2.0
            ys = jnp.array([0, 1])
            reference = eqslax.BPTT().grad(model, loss, xs, ys)
            table.append(
                (
                    name,
                    kind,
                    [cell(r, model, reference, loss, xs, ys) for r in named_rules.values()],
                )
            )
    return list(named_rules), table


MARK = {"exact": "✓", "approximate": "≈", "refused": "✗"}


def markdown() -> str:
    names, table = support_matrix()
    lines = [
        "---",
        "hide: [navigation, toc]",  # the table needs the page's whole width
        "---",
        "",
        "# Support matrix",
        "",
        "Which learning rule runs on which layer and neuron, measured when this page was",
        "built: each cell runs the rule on a small random float64 network (the hidden layer",
        "of the row, then a leaky-integrator readout, per-step cross-entropy) and compares",
        "its gradient with BPTT's. ✓ exact: equal to BPTT to a relative error below 1e-8;",
        "≈ approximate, with the global cosine similarity of its gradient to BPTT's;",
        "✗ refused, with the number of the reason the rule gave (listed below the table).",
        "",
        "| layer | kind | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    reasons = []
    for row, kind, cells in table:
        shown = []
        for status, detail in cells:
            if status == "refused":
                if detail not in reasons:
                    reasons.append(detail)
                shown.append(f"✗ [{reasons.index(detail) + 1}]")
            else:
                shown.append(MARK[status] + (f" {detail}" if detail else ""))
        lines.append(f"| {row} | {kind} | " + " | ".join(shown) + " |")
    lines += ["", "Reasons given by the rules that refused:", ""]
    lines += [f"{i + 1}. {reason}" for i, reason in enumerate(reasons)]
    return "\n".join(lines) + "\n"


def on_files(files, config):
    from mkdocs.structure.files import File

    started = time.perf_counter()
    files.append(File.generated(config, "support.md", content=markdown()))
    logging.getLogger("mkdocs.hooks.support").info(
        f"support matrix measured in {time.perf_counter() - started:.0f} s"
    )
    return files
