"""`report.html`: the report as one self-contained page (images embedded as data URIs),
rendered from the Markdown subset `report.md` is written in: headings, paragraphs,
bullet lists, pipe tables, images, inline code and emphasis."""

import base64
import html
import os
import re

_IMAGE = re.compile(r"^!\[([^\]]*)\]\(([^)]+)\)$")
_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*([^*]+)\*\*")
_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 70rem; margin: 2rem auto;
       padding: 0 1rem; line-height: 1.45; color: #1b1b1b; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #c8c8c8; padding: 0.25rem 0.5rem; text-align: left; }
th { background: #f0f0f0; }
img { max-width: 100%; display: block; margin: 1rem 0; }
code { background: #f4f4f4; padding: 0 0.2rem; }
"""


def _inline(text: str) -> str:
    text = html.escape(text, quote=False)
    text = _CODE.sub(r"<code>\1</code>", text)
    return _BOLD.sub(r"<strong>\1</strong>", text)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _table(lines: list[str]) -> str:
    head, *body = [_cells(line) for line in lines if not re.fullmatch(r"\|[-:| ]+\|?", line)]
    rows = ["<tr>" + "".join(f"<th>{_inline(c)}</th>" for c in head) + "</tr>"]
    rows += ["<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in body]
    return "<table>\n" + "\n".join(rows) + "\n</table>"


def _image(alt: str, path: str, folder: str) -> str:
    full = path if os.path.isabs(path) else os.path.join(folder, path)
    kind = "png" if full.lower().endswith(".png") else "svg+xml"
    with open(full, "rb") as file:
        data = base64.b64encode(file.read()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/{kind};base64,{data}">'


def _blocks(text: str) -> list[list[str]]:
    """Runs of non-blank lines; a table, a list or an image line starts its own block."""
    blocks: list[list[str]] = []
    for line in text.splitlines():
        kind = _kind(line)
        if not line.strip():
            blocks.append([])
        elif blocks and blocks[-1] and _kind(blocks[-1][-1]) == kind and kind != "image":
            blocks[-1].append(line)
        elif blocks and blocks[-1] and kind == "text" and _kind(blocks[-1][-1]) == "list":
            blocks[-1].append(line)  # a list item wrapped over several lines
        else:
            blocks.append([line])
    return [b for b in blocks if b]


def _kind(line: str) -> str:
    stripped = line.strip()
    if stripped.startswith("|"):
        return "table"
    if stripped.startswith("- "):
        return "list"
    if stripped.startswith("#"):
        return "heading"
    if _IMAGE.match(stripped):
        return "image"
    return "text"


def markdown_to_html(text: str, folder: str, title: str = "eqslax compare") -> str:
    """The page for `text` (report.md's Markdown); images are read from `folder`."""
    parts = []
    for block in _blocks(text):
        kind = _kind(block[0])
        if kind == "heading":
            level = len(block[0]) - len(block[0].lstrip("#"))
            parts.append(f"<h{level}>{_inline(block[0].lstrip('#').strip())}</h{level}>")
            if block[1:]:
                parts.append(f"<p>{_inline(' '.join(block[1:]))}</p>")
        elif kind == "table":
            parts.append(_table(block))
        elif kind == "image":
            parts.append(_image(*_IMAGE.match(block[0].strip()).groups(), folder))
        elif kind == "list":
            items, current = [], []
            for line in block:
                if line.strip().startswith("- ") and current:
                    items.append(" ".join(current))
                    current = []
                current.append(line.strip().removeprefix("- "))
            items.append(" ".join(current))
            parts.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in items) + "</ul>")
        else:
            parts.append(f"<p>{_inline(' '.join(line.strip() for line in block))}</p>")
    body = "\n".join(parts)
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n"
        f"<body>\n{body}\n</body>\n</html>\n"
    )
