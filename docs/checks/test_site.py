"""The built site as a reader sees it: headless Chromium renders pages of `site/`.

Run with `make docs-check` after `make docs`. Skips, saying why, where Chromium is absent
or cannot start headless (a browser that renders `about:blank` and then fails on a page
of the site fails the check).
"""

import functools
import html
import re
import shutil
import subprocess
from pathlib import Path

import pytest

SITE = Path(__file__).resolve().parents[2] / "site"
BROWSER = next(
    (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)),
    None,
)


HEADLESS = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu"]


@functools.cache
def browser_problem() -> str | None:
    """Why no headless Chromium can render here, or `None` when one can."""
    if BROWSER is None:
        return "no Chromium on this machine (Debian: apt-get install chromium)"
    try:
        probe = subprocess.run(
            [*HEADLESS, "--dump-dom", "about:blank"], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"{BROWSER} cannot start headless: {error}"
    if probe.returncode != 0 or "<html" not in probe.stdout:
        return f"{BROWSER} cannot start headless: {probe.stderr.strip()[-300:]}"
    return None


def rendered(page: str) -> str:
    """The DOM of `site/<page>` after Chromium has loaded it and run its scripts."""
    problem = browser_problem()
    if problem is not None:
        pytest.skip(problem)
    path = SITE / page
    assert path.exists(), f"{path} is missing: run `make docs` first"
    result = subprocess.run(
        [*HEADLESS, "--dump-dom", path.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def visible_text(dom: str) -> str:
    """Text outside code blocks, scripts, styles and MathML annotations."""
    dom = re.sub(r"<(script|style|code|pre|math)\b.*?</\1>", " ", dom, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", " ", dom))


def test_home_page_renders_with_its_title_and_maths():
    dom = rendered("index.html")
    assert re.search(r"<title>\s*eqslax\s*</title>", dom)
    assert "<math" in dom
    assert "$" not in visible_text(dom)


@pytest.mark.parametrize("page", ["api/rules/index.html", "api/neurons/index.html"])
def test_api_page_renders_docstring_maths(page):
    dom = rendered(page)
    assert "OSTL" in dom or "LIF" in dom
    assert dom.count("<math") >= 5
    text = visible_text(dom)
    assert "$" not in text, text[max(0, text.find("$") - 200) : text.find("$") + 200]
    assert ":math:" not in text


def test_support_matrix_page_lists_every_rule():
    dom = rendered("support/index.html")
    for name in ("bptt", "rtrl", "ostl", "ottt", "otpe", "eprop"):
        assert f">{name}<" in dom
    assert "✓" in dom
