"""One docstring dialect: Markdown with `$...$` / `$$...$$` maths and `**Arguments:**`, as
the Equinox family writes them. The API pages render docstrings as Markdown, so RST markup
(``` ``code`` ```, `:math:`, `:class:`, `.. math::`, `text::` literal blocks) would show
up raw on the site.

Every bare string statement in `eqslax/` is checked: module, class and function docstrings
and the attribute docstrings that follow an assignment (the API pages show those too).
"""

import ast
import pathlib
import re

import pytest

import eqslax

ROOT = pathlib.Path(eqslax.__file__).parent

RST = {
    "double-backtick literal (write `code`)": re.compile(r"(?<!`)``(?!`)"),
    "RST role such as :math: or :class: (write $x$ or `Name`)": re.compile(r":[a-z:]+:`"),
    "RST directive such as .. math:: (write $$ ... $$ or a ``` fence)": re.compile(
        r"^\s*\.\. [a-z-]+::", re.M
    ),
    "RST literal block `text::` (write a ```python fence)": re.compile(
        r"^(?!\s*\.\. ).*\S::[ \t]*$", re.M
    ),
}


def docstrings(path: pathlib.Path):
    """`(line, text)` of every bare string statement in the file."""
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            if isinstance(node.value.value, str):
                yield node.lineno, node.value.value


def rst_markup(text: str) -> list[str]:
    """What RST markup `text` contains, described."""
    return [what for what, pattern in RST.items() if pattern.search(text)]


def test_docstrings_are_markdown_not_rst():
    offenders = []
    for path in sorted(ROOT.rglob("*.py")):
        for line, text in docstrings(path):
            for what in rst_markup(text):
                offenders.append(f"eqslax/{path.relative_to(ROOT)}:{line}: {what}")
    assert not offenders, "RST markup in docstrings:\n" + "\n".join(offenders)


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("the ``decay`` field", 1),
        (":math:`\\lambda` and :class:`LIF`", 1),
        ("Example::\n\n    x = 1\n", 1),
        ("    .. math::\n        v_t = u_t\n", 1),
        ("the `decay` field, $\\lambda$, `LIF`", 0),
        ("```python\nx = a[::2]\n```\n", 0),
        ("$$\nv_t = u_t\n$$", 0),
    ],
)
def test_the_check_tells_rst_from_markdown(text, found):
    assert len(rst_markup(text)) == found
