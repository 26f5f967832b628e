"""`eqslax compare` end to end on a tiny configuration."""

import json
import os
import pathlib

import pytest

from eqslax._cli import main


def test_compare_writes_report_json_and_images(tmp_path, capsys):
    out = str(tmp_path / "cmp")
    code = main(
        [
            "compare",
            "--rules",
            "bptt,ostl,eprop",
            "--epochs",
            "1",
            "--classes",
            "3",
            "--units",
            "6",
            "--steps",
            "8",
            "--samples",
            "12",
            "--hidden",
            "6",
            "--batch-size",
            "8",
            "--grid",
            "4",
            "--out",
            out,
        ]
    )
    assert code == 0
    assert "report written to" in capsys.readouterr().out
    report = pathlib.Path(os.path.join(out, "report.md")).read_text()
    for rule in ("bptt", "ostl", "eprop"):
        assert f"| {rule} |" in report
    results = json.loads(pathlib.Path(os.path.join(out, "results.json")).read_text())
    assert set(results["rules"]) == {"bptt", "ostl", "eprop"}
    ostl = results["rules"]["ostl"]
    assert 0.0 <= ostl["final_test_accuracy"] <= 1.0
    # OSTL is exact on the readout layer at the initial parameters
    assert ostl["initial_similarity"]["layers"][".layers[2]"]["cosine"] == pytest.approx(
        1.0, abs=1e-6
    )
    assert len(results["landscape"]["surface"]) == 4
    for name in results["figures"].values():
        data = pathlib.Path(os.path.join(out, name)).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000
    assert not [f for f in os.listdir(out) if f.startswith(".tmp")]


def test_compare_rejects_unknown_rules(tmp_path, capsys):
    assert main(["compare", "--rules", "bptt,magic", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "'magic'" in err and "valid rules" in err and "ostl" in err
