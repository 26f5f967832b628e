"""The documentation's sources agree with each other, without building the site (the
build itself, `make docs`, runs every tutorial cell and renders every page).

- every tutorial script is on the site's navigation, and every tutorial page listed there
  has its script;
- a tutorial shows only code that runs: code sits in `# %%` cells, never in a fenced
  block inside a Markdown cell;
- every `<!-- measured: NAME -->` table of the Results and Benchmarks pages renders from
  its JSON in `docs/data/` (the numbers are never typed into a page);
- the README's links into the repository point at files that exist.
"""

import importlib.util
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
TUTORIALS = sorted((DOCS / "tutorials").glob("[0-9]*.py"))


def _hook(name):
    spec = importlib.util.spec_from_file_location(
        f"docs_hook_{name}", DOCS / "hooks" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_tutorial_is_on_the_navigation_and_back():
    nav = set(re.findall(r"tutorials/(\w+)\.md", (ROOT / "mkdocs.yml").read_text()))
    assert TUTORIALS, "no tutorials found"
    assert nav == {path.stem for path in TUTORIALS}


@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.stem)
def test_tutorial_code_is_in_cells_that_run(path):
    source = path.read_text()
    assert source.startswith("# %% [markdown]"), f"{path.name}: start with a Markdown cell"
    in_markdown = False
    for number, line in enumerate(source.splitlines(), 1):
        if line.startswith("# %%"):
            in_markdown = "[markdown]" in line
        elif in_markdown:
            assert line.startswith("#") or not line.strip(), (
                f"{path.name}:{number}: a Markdown cell holds a line that is not a comment"
            )
            assert not line.lstrip("# ").startswith("```"), (
                f"{path.name}:{number}: fenced code in a Markdown cell is shown but never run"
            )


def _markers():
    for page in ("results.md", "benchmarks.md"):
        for name in re.findall(r"^<!-- measured: (\S+) -->$", (DOCS / page).read_text(), re.M):
            yield page, name


@pytest.mark.parametrize(("page", "name"), list(_markers()), ids=lambda v: str(v))
def test_measured_tables_render_from_their_json(page, name):
    measured = _hook("measured")
    table = measured.render(name, DOCS / "data", page)
    assert re.search(r"^\|.*\|$", table, re.M), f"{name}: no table rendered"
    assert re.search(r"\d\.\d", table), f"{name}: the table holds no number"


def test_a_marker_without_its_json_fails_naming_the_file(tmp_path):
    measured = _hook("measured")
    with pytest.raises(RuntimeError, match="memory.json"):
        measured.render("memory", tmp_path, "benchmarks.md")
    with pytest.raises(RuntimeError, match="no renderer"):
        measured.render("nonsense", tmp_path, "benchmarks.md")


def test_readme_links_into_the_repository_exist():
    readme = (ROOT / "README.md").read_text()
    links = [t for t in re.findall(r"\]\(([^)#]+)\)", readme) if "://" not in t]
    assert links
    missing = [t for t in links if not (ROOT / t).exists()]
    assert not missing, f"README links to missing files: {missing}"
