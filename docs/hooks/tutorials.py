"""MkDocs hook: tutorials are Python scripts, executed at build time.

A tutorial is a script in `docs/tutorials/` written in the "percent" format: cells start
with `# %%`; a cell whose marker reads `# %% [markdown]` holds prose as comment lines.
Every code cell runs, in order and in one namespace, when the site is built; the page
shows each cell's code, what it printed and the figures it left open. A cell that raises
fails the build, so the printed output on the site is always real.

`EQSLAX_TUTORIALS=full` runs the tutorials at their full sizes; the default (CI) runs
them small. A tutorial reads that variable itself, so it also runs as a plain script
(`python docs/tutorials/02_training_bptt.py`) with the same sizes.
"""

import contextlib
import io
import logging
import os
import re
import time
from pathlib import Path

from mkdocs.structure.files import File

log = logging.getLogger("mkdocs.hooks.tutorials")
CELL = re.compile(r"^# %%(.*)$", re.M)


def split_cells(source: str) -> list[tuple[str, str]]:
    """`[(kind, text)]` with kind "markdown" or "code", in order."""
    marks = list(CELL.finditer(source))
    cells = []
    for index, mark in enumerate(marks):
        end = marks[index + 1].start() if index + 1 < len(marks) else len(source)
        body = source[mark.end() : end].strip("\n")
        if "[markdown]" in mark.group(1):
            prose = "\n".join(re.sub(r"^# ?", "", line) for line in body.splitlines())
            cells.append(("markdown", prose))
        elif body.strip():
            cells.append(("code", body))
    return cells


def figures_png() -> list[bytes]:
    """Every open matplotlib figure as PNG bytes; the figures are closed."""
    import matplotlib.pyplot as plt

    images = []
    for number in plt.get_fignums():
        buffer = io.BytesIO()
        plt.figure(number).savefig(buffer, format="png", dpi=100, bbox_inches="tight")
        images.append(buffer.getvalue())
    plt.close("all")
    return images


def run_tutorial(path: Path, full: bool) -> tuple[str, dict[str, bytes]]:
    """The page's Markdown and its images `{name: png}`."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    namespace = {"__name__": "__main__"}
    lines, images = [], {}
    import jax

    x64 = jax.config.jax_enable_x64
    started = time.perf_counter()
    for kind, text in split_cells(path.read_text()):
        if kind == "markdown":
            lines += [text, ""]
            continue
        lines += ["```python", text, "```", ""]
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            try:
                exec(compile(text, str(path), "exec"), namespace)
            except Exception as error:
                raise RuntimeError(f"tutorial {path.name} failed in cell:\n{text}") from error
        if printed.getvalue().strip():
            lines += ["```text", printed.getvalue().rstrip(), "```", ""]
        for png in figures_png():
            name = f"{path.stem}-{len(images)}.png"
            images[name] = png
            lines += [f"![figure {len(images)}]({name})", ""]
    elapsed = time.perf_counter() - started
    import jax

    jax.config.update("jax_enable_x64", x64)  # a tutorial's precision stays its own
    lines += [
        "---",
        f"*This page was produced by running `docs/tutorials/{path.name}` "
        f"({'full' if full else 'small'} sizes, {elapsed:.0f} s when the site was built).*",
    ]
    return "\n".join(lines), images


def on_files(files, config):
    sizes = os.environ.get("EQSLAX_TUTORIALS", "small")
    if sizes not in ("small", "full"):
        raise ValueError(f"EQSLAX_TUTORIALS must be `small` or `full`, got {sizes!r}")
    full = sizes == "full"
    folder = Path(config["docs_dir"]) / "tutorials"
    for path in sorted(folder.glob("[0-9]*.py")):
        markdown, images = run_tutorial(path, full)
        log.info(f"tutorial {path.name} ran")
        files.append(File.generated(config, f"tutorials/{path.stem}.md", content=markdown))
        for name, png in images.items():
            files.append(File.generated(config, f"tutorials/{name}", content=png))
    return files
