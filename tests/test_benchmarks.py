"""The benchmark scripts run end to end in a tiny configuration (no timing assertions).

Runtime: about 20 s on 2 lightly loaded CPU cores, most of it the memory script's four
child processes, each importing JAX and compiling.
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import eqslax
from benchmarks import bptt_speed, gpu_bptt, memory


def _written(folder, name):
    path = os.path.join(folder, name)
    assert os.path.isfile(path) and os.path.getsize(path) > 0, path
    return path


def test_bptt_speed_runs_and_agrees_with_the_hand_scan(tmp_path):
    out = str(tmp_path / "speed")
    argv = ["--sizes", "8", "--steps", "5", "--batch", "2", "--repeats", "1", "--out", out]
    results = bptt_speed.main(argv)
    with open(_written(out, "results.json")) as file:
        saved = json.load(file)
    _written(out, "bptt_speed.png")
    assert saved["agreement_passed"] and results["agreement_passed"]
    (row,) = saved["rows"]
    assert row["size"] == 8
    assert row["agreement"]["spike_max_abs_diff"] == 0.0
    assert row["agreement"]["output_rate"] > 0  # the check compared actual spikes
    for key in ("eqslax_s", "train_step_s", "hand_s", "matmul_s", "compile_s"):
        assert row[key] >= 0
    assert set(row["peers"]) == set(bptt_speed.PEERS)
    assert not os.path.exists(os.path.join(out, "results.json.tmp"))


def test_gpu_script_dry_run_sweeps_unrolls_and_quotes_the_paper(tmp_path):
    """`gpu_bptt --cpu` runs the same checks and timings; the layer-wise programs are
    timed at every unroll factor, the fastest kept, and the paper's seconds set beside."""
    out = str(tmp_path / "gpu")
    argv = ["--cpu", "--sizes", "8", "--steps", "5", "--batch", "2", "--repeats", "1"]
    results = gpu_bptt.main(argv + ["--unrolls", "1,2", "--out", out])
    (row,) = results["bptt_speed"]["rows"]
    assert row["agreement"]["passed"]
    sweep = row["unroll_sweep"]
    assert sorted(sweep["median_s"]) == ["eqslax_1", "eqslax_2", "hand_1", "hand_2"]
    assert row["unroll"] == min((1, 2), key=lambda u: sweep["median_s"][f"eqslax_{u}"])
    with open(_written(out, "table.md")) as file:
        assert "paper A100 Slax s" in file.read()
    with open(_written(out, "results.json")) as file:
        assert json.load(file)["paper_a100_s"]["slax"]["4096"] == 0.08
    if jax.default_backend() != "gpu":  # without --cpu it refuses to time a CPU
        with pytest.raises(SystemExit, match="JAX sees no GPU"):
            gpu_bptt.main(["--out", out])


def test_hand_scan_follows_the_lif_equations():
    """One LIF unit, one block, written out: v = λu + I; s = H(v - ϑ); u = v - ϑs."""
    weight, bias = jnp.array([[2.0]]), jnp.array([0.0])
    xs = jnp.array([[[0.3], [0.3], [0.3], [0.0]]])  # (batch, time, in)
    constants = bptt_speed.LIFConstants(decay=0.5, threshold=1.0, slope=25.0)
    spikes = bptt_speed.hand_spikes(((weight, bias),), xs, constants)[:, 0, 0]
    # v: 0.6 -> 0.9 -> 1.05 (spike, u = 0.05) -> 0.025
    assert spikes.tolist() == [0.0, 0.0, 1.0, 0.0]
    grad = jax.grad(lambda x: bptt_speed.heaviside(x, 25.0))(jnp.asarray(0.1))
    assert grad == pytest.approx(1.0 / (1.0 + 25.0 * 0.1) ** 2)


def test_peer_hook_checks_spikes_before_timing(monkeypatch):
    """Missing peers are reported, a peer is timed only if its spikes match eqslax's,
    and a peer that raises does not stop the run. Stand-in modules play the peers."""
    model = bptt_speed.build_model(8, jax.random.key(0))
    xs = bptt_speed.spike_input(jax.random.key(1), 2, 25, 8, jnp.float64)

    def spikes(xs):
        return np.asarray(bptt_speed.eqslax_forward(model, jnp.asarray(xs)))

    def agrees(model):
        return bptt_speed.Peer(model, 0, spikes, lambda xs: lambda: spikes(xs))

    def flipped(model):
        return bptt_speed.Peer(model, 0, lambda xs: 1.0 - spikes(xs), lambda xs: None)

    def raises(model):
        raise RuntimeError("API drift")

    peers = {"json": agrees, "math": flipped, "string": raises, "no_such_peer_module": agrees}
    monkeypatch.setattr(bptt_speed, "PEERS", peers)
    report = bptt_speed.run_peers(model, xs, repeats=1)
    assert report["json"]["status"] == "ok" and report["json"]["spike_mismatch"] == 0.0
    assert report["json"]["median_s"] > 0
    assert report["math"] == {"status": "disagrees", "spike_mismatch": 1.0}
    assert report["string"]["status"] == "failed: RuntimeError: API drift"
    assert report["no_such_peer_module"] == {"status": "not installed"}


def test_memory_runs_and_online_memory_does_not_grow(tmp_path):
    out = str(tmp_path / "memory")
    argv = [
        "--lengths",
        "10,20",
        "--rules",
        "bptt,ostl",
        "--repeats",
        "1",
        "--jobs",
        "2",
        "--out",
        out,
    ]
    memory.main(argv)
    with open(_written(out, "results.json")) as file:
        saved = json.load(file)
    _written(out, "memory.png")
    assert all("error" not in row for row in saved["rows"]), saved["rows"]
    assert [(r["rule"], r["length"]) for r in saved["rows"]] == [
        ("bptt", 10), ("bptt", 20), ("ostl", 10), ("ostl", 20),
    ]  # fmt: skip
    ratio = {s["rule"]: s["rule_temp_ratio"] for s in saved["summary"]}
    # BPTT stores every step: twice the steps, clearly more working memory.
    assert ratio["bptt"] > 1.3
    # OSTL carries traces of a fixed size.
    assert ratio["ostl"] < 1.2
    ostl = [r for r in saved["rows"] if r["rule"] == "ostl"]
    assert all(r["floor_agreement"] < 1e-4 and r["vs_floor_paired"] > 0 for r in ostl)
    assert ostl[1]["floor_xla_temp"] == ostl[0]["floor_xla_temp"]  # flat in T


@pytest.mark.parametrize("name", ["ottt", "ostl"])
def test_hand_written_floors_equal_eqslax(name):
    """The floors compute the rule's own gradient (float64, 1e-12), so the time ratio
    compares implementations of the same update."""
    k = jax.random.split(jax.random.key(0), 3)
    model = eqslax.feedforward((8, 16, 4), key=k[0], readout="li")
    xs = jax.random.bernoulli(k[1], 0.3, (3, 30, 8)).astype(jnp.float64)
    ys = jax.random.randint(k[2], (3,), 0, 4)
    rule = {"ottt": eqslax.OTTT(), "ostl": eqslax.OSTL()}[name]
    expected = memory.as_tuple(rule.grad(model, eqslax.PerStep(), xs, ys))
    got = memory.FLOORS[name](memory.network(model), xs, ys)
    assert float(jnp.abs(expected[0]).max()) > 0  # the hidden layer learns: not vacuous
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_rule_registry_and_argument_checks():
    assert {"bptt", "bptt_checkpoint", "ostl", "rtrl"} <= {
        name for name, entry in memory.RULES.items() if entry.available()
    }
    with pytest.raises(ValueError, match="--rules"):
        memory.parse_args(["--rules", "bptt,nonsense"])
    with pytest.raises(ValueError, match="--sizes"):
        bptt_speed.parse_args(["--sizes", "8,x"])


def test_compare_seeds_runs_both_ways(tmp_path):
    from benchmarks import compare_seeds

    out = str(tmp_path / "seeds")
    argv = ["--rules", "bptt", "--seeds", "2", "--epochs", "1", "--rounds", "1"]
    argv += ["--sizes", "4,5,2", "--steps", "4", "--samples", "4", "--batch", "2", "--out", out]
    summary = compare_seeds.main(argv)
    (row,) = summary["rules"]["bptt"]
    assert row["vmapped"]["vmapped"] and not row["sequential"]["vmapped"]
    # the two ways train the same seeds to the same models
    assert row["vmapped"]["test_accuracy"] == row["sequential"]["test_accuracy"]
    _written(out, "results.json")


def test_peer_braintrace_without_braintrace_says_so_and_skips(capsys):
    from benchmarks import peer_braintrace

    result = peer_braintrace.main(["--compare", "--peer-python", "/no/such/python"])
    assert "no/such/python" in result["skipped"]
    assert "braintrace is not available" in capsys.readouterr().out


def test_peer_braintrace_eqslax_side_times_every_rule():
    from benchmarks import peer_braintrace

    models = "ff2:2,3,2,3,2"
    result = peer_braintrace.main(["--side", "eqslax", "--models", models, "--repeats", "1"])
    rows = {(row["model"], row["rule"]): row for row in result["rows"]}
    assert set(rows) == {(m, r) for m in models.split(";") for r in peer_braintrace.EQSLAX_RULES}
    assert all(row["ms_per_step"] > 0 and len(row["times_s"]) == 1 for row in rows.values())
    with pytest.raises(ValueError, match="--models"):
        peer_braintrace.parse_models("rec2:2,4,3,5,2")


def test_distributed_runs_on_two_simulated_devices(tmp_path):
    from benchmarks import distributed

    out = str(tmp_path / "distributed")
    argv = ["--devices", "1,2", "--rules", "bptt", "--sizes", "4,6,2", "--steps", "4"]
    results = distributed.main(argv + ["--batch", "4", "--repeats", "1", "--out", out])
    assert [(r["rule"], r["devices"]) for r in results["rows"]] == [("bptt", 1), ("bptt", 2)]
    assert results["simulated_devices"] and len(results["device"]["devices"]) == 2
    for row in results["rows"]:
        assert row["samples_per_s"] > 0 and row["per_device_batch"] == 4 // row["devices"]
        assert row["max_abs_diff_vs_1_device"] <= 1e-6  # the same update on two devices
    _written(out, "results.json")
    _written(out, "distributed.png")
    with pytest.raises(ValueError, match="--batch"):
        distributed.parse_args(["--devices", "1,3", "--batch", "4"])
