"""MkDocs hook: maths rendered to MathML when the site is built.

`pymdownx.arithmatex` (generic mode) marks `$...$` and `$$...$$` as
`<span class="arithmatex">\\(...\\)</span>` and `<div class="arithmatex">\\[...\\]</div>`;
this hook replaces each with MathML, which browsers render natively, so pages need no
JavaScript and no network. A formula the converter cannot read fails the build, naming
the page and the formula.
"""

import html
import re

from latex2mathml.converter import convert

INLINE = re.compile(r'<span class="arithmatex">\\\((.*?)\\\)</span>', re.S)
BLOCK = re.compile(r'<div class="arithmatex">\\\[(.*?)\\\]</div>', re.S)


def to_mathml(latex: str, display: str, page) -> str:
    source = html.unescape(latex).strip()
    try:
        return convert(source, display=display)
    except Exception as error:
        raise RuntimeError(
            f"{page.file.src_uri}: cannot render the formula {source!r}: {error}"
        ) from error


def on_page_content(content, page, config, files):
    content = BLOCK.sub(lambda m: to_mathml(m.group(1), "block", page), content)
    return INLINE.sub(lambda m: to_mathml(m.group(1), "inline", page), content)
