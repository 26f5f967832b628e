"""MkDocs hook: the API reference pages, generated from what the package exports.

Every public name of `eqslax` and of its public subpackages lands on exactly one page,
chosen by the module that defines it. A name whose module is not mapped below fails
the build, so the reference cannot silently miss a new public name.
"""

import importlib
import inspect

from mkdocs.structure.files import File

# page -> (title, intro, defining-module prefixes for top-level names, subpackage or None)
PAGES = {
    "networks": (
        "Networks and simulation",
        "Graphs of layers, running them over time, and ready-made networks.",
        (
            "eqslax._connect",
            "eqslax._simulate",
            "eqslax._zoo",
            "eqslax._flatten",
            "eqslax._delay",
            "eqslax._dcls",
            "eqslax._continuous",
        ),
        None,
    ),
    "neurons": (
        "Neurons",
        "Neuron populations with explicit, typed state records.",
        ("eqslax._neurons",),
        None,
    ),
    "surrogates": (
        "Surrogate gradients",
        "Heaviside steps with a surrogate derivative, one custom JVP each.",
        ("eqslax._surrogate",),
        None,
    ),
    "losses": (
        "Losses",
        "Losses on output sequences, with the one normalisation every rule uses.",
        ("eqslax._losses", "eqslax._first_spike"),
        None,
    ),
    "rules": (
        "Learning rules",
        "Learning rules as transformations around a model: `init`, `update`, `grad`.",
        ("eqslax._rules",),
        None,
    ),
    "layerwise": (
        "Layer-wise toolkit",
        "The pieces OSTL, OTTT, OTPE and e-prop are made of, for writing layer-local rules.",
        (),
        "eqslax.layerwise",
    ),
    "training": (
        "Training",
        "Training steps, the training loop, checkpoints and trainable parameters.",
        (
            "eqslax._train",
            "eqslax._train_online",
            "eqslax._step",
            "eqslax._fit",
            "eqslax._checkpoint",
            "eqslax._parameters",
            "eqslax._nonfinite",
            "eqslax._hessian",
            "eqslax._metrics",
        ),
        None,
    ),
    "distributed": (
        "More than one device",
        "Data-parallel training over `jax.sharding`, several processes with `jax.distributed`.",
        (),
        "eqslax.distributed",
    ),
    "data": ("Data", "Datasets, event files and event binning.", (), "eqslax.data"),
    "encode": ("Spike encoders", "Dense inputs to spike trains.", (), "eqslax.encode"),
    "analysis": (
        "Analysis",
        "Gradient similarity, loss landscapes and trajectories.",
        ("eqslax.analysis",),
        "eqslax.analysis",
    ),
    "plot": ("Plotting", "Figures (matplotlib); imported on request.", (), "eqslax.plot"),
    "compare": (
        "Comparing rules",
        "Training several rules on the same model and reporting how they differ.",
        ("eqslax.compare",),
        "eqslax.compare",
    ),
    "nir": ("NIR", "Export to and import from the Neuromorphic IR.", (), "eqslax.nir"),
    "flax_bridge": (
        "Flax bridge",
        "eqslax networks as Flax RNN cells and Flax cells as eqslax neurons.",
        (),
        "eqslax.flax_bridge",
    ),
    "neurobench": (
        "NeuroBench",
        "NeuroBench metrics from recorded activity.",
        (),
        "eqslax.neurobench",
    ),
}


def public_names(module) -> list[str]:
    """Names a user imports from `module`: re-exported objects, no private or dunder names,
    no submodules."""
    names = []
    for name, value in vars(module).items():
        if name.startswith("_") or inspect.ismodule(value):
            continue
        names.append(name)
    return names


def assign_pages() -> dict[str, list[str]]:
    """Page -> fully qualified public names, in definition order; raises on unmapped names."""
    import eqslax

    pages = {page: [] for page in PAGES}
    unmapped = []
    for name in public_names(eqslax):
        value = getattr(eqslax, name)
        defined_in = getattr(value, "__module__", "") or ""
        for page, (_, _, prefixes, _) in PAGES.items():
            if any(defined_in == p or defined_in.startswith(p + ".") for p in prefixes):
                pages[page].append(f"eqslax.{name}")
                break
        else:
            if name != "__version__":
                unmapped.append(f"eqslax.{name} (defined in {defined_in or '?'})")
    for page, (_, _, _, package) in PAGES.items():
        if package is None:
            continue
        module = importlib.import_module(package)
        pages[page].extend(f"{package}.{name}" for name in public_names(module))
    if unmapped:
        raise RuntimeError(
            "docs/hooks/api_pages.py: public names not on any API page: "
            + ", ".join(unmapped)
            + ". Map their module in PAGES."
        )
    return pages


def page_markdown(page: str, names: list[str]) -> str:
    title, intro, _, _ = PAGES[page]
    lines = [f"# {title}", "", intro, ""]
    seen = set()
    for name in names:
        if name in seen:
            continue
        seen.add(name)
        lines += [f"::: {name}", ""]
    return "\n".join(lines)


def on_files(files, config):
    for page, names in assign_pages().items():
        files.append(File.generated(config, f"api/{page}.md", content=page_markdown(page, names)))
    return files
