"""The README's quick start runs as written (with one epoch instead of ten)."""

import pathlib
import re


def test_readme_quick_start_runs(capsys):
    readme = (pathlib.Path(__file__).parent.parent / "README.md").read_text()
    block = re.search(r"## Quick start\n\n```python\n(.*?)```", readme, re.S)
    assert block is not None, "README has no quick-start code block"
    code = block.group(1)
    assert len(code.strip().splitlines()) <= 15
    assert "epochs=10" in code
    exec(compile(code.replace("epochs=10", "epochs=1"), "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert "cosine" in printed and ".layers[2]" in printed
