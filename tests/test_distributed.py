"""Data-parallel training on several devices equals training on one.

The suite keeps one CPU device; these tests run JAX in child processes. One child sees 8
simulated CPU devices (`--xla_force_host_platform_device_count=8`) and runs every
single-device/multi-device comparison in one go; another test starts two real JAX
processes joined by `jax.distributed` over loopback (CPU collectives: gloo).

Data parallelism changes only the order of the floating-point sums of the per-sample
gradients, so after 5 updates the models agree to 1e-12 in float64 and 1e-6 in float32.

Runtime: about 45 s of CPU time in all (the 8-device child about 23 s, each of the two
processes about 7 s, side by side), nearly all of it compiling each training step once
for one device and once for the mesh; 80 s of wall time was measured on 2 cores with a
load average of 5 to 6.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap

import equinox as eqx
import jax
import numpy as np
import optax
import pytest

import eqslax
from eqslax.data import randman

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

EIGHT_DEVICES = textwrap.dedent(
    """
    import json

    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    jax.config.update("jax_enable_x64", True)
    import eqslax
    from eqslax.data import ArrayLoader, Loaders, randman
    from eqslax.distributed import data_mesh

    out = {"devices": jax.device_count()}
    data = randman(
        jax.random.key(0), n_classes=2, n_units=4, n_steps=6, samples_per_class=25,
        test_fraction=0.2,
    )  # 40 training samples: 5 batches of 8; 10 test samples, which 8 does not divide
    base = eqslax.feedforward((4, 8, 2), key=jax.random.key(1), readout="li")
    loss = eqslax.PerStep()


    def cast(tree, dtype):
        def one(x):
            floating = eqx.is_array(x) and jnp.issubdtype(x.dtype, jnp.floating)
            return x.astype(dtype) if floating else x

        return jax.tree.map(one, tree)


    def params(model):
        return [np.asarray(x) for x in jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array))]


    def gap(a, b):
        return max(float(np.max(np.abs(x - y))) for x, y in zip(params(a), params(b)))


    def steps(model, dtype):
        adam = optax.adam(1e-2)
        if dtype == "float64":
            return {
                "bptt/offline": eqslax.train_offline(model, loss, adam),
                "ostl/online": eqslax.train_online(model, eqslax.OSTL(), loss, adam),
                "ottt/deferred": eqslax.train_online_deferred(model, eqslax.OTTT(), loss, adam),
                "fptt": eqslax.train_fptt(model, eqslax.FPTT(segments=2), loss, adam),
            }
        return {
            "bptt/offline": eqslax.train_offline(model, loss, adam),
            "ostl/deferred": eqslax.train_online_deferred(model, eqslax.OSTL(), loss, adam),
            "ottt/online": eqslax.train_online(model, eqslax.OTTT(), loss, adam),
        }


    def train(model, step, data, **options):
        seen = []

        def on_step(done, model, xs, ys):
            seen.append(len(xs.sharding.device_set))

        if not isinstance(data, Loaders):
            options.setdefault("batch_size", 8)
        options.setdefault("epochs", 1)
        model, history = eqslax.fit(
            model, step, data, key=jax.random.key(2), progress=False, on_step=on_step,
            **options,
        )
        return model, history, seen


    def error(call):
        try:
            call()
        except ValueError as e:
            return str(e)
        return None


    mesh = data_mesh()
    reference = {}
    for dtype in ("float64", "float32"):
        model = cast(base, jnp.dtype(dtype))
        split = cast(data, jnp.dtype(dtype))
        for name, step in steps(model, dtype).items():
            one, h1, _ = train(model, step, split)
            many, h8, seen = train(model, step, split, mesh=mesh)
            reference[dtype, name] = (model, step, split, one)
            out[f"{dtype} {name}"] = {
                "gap": gap(one, many),
                "updates": len(seen),
                "devices_per_batch": sorted(set(seen)),
                "dtype": str(params(many)[0].dtype),
                "train_loss_gap": abs(h1["train_loss"][-1] - h8["train_loss"][-1]),
                "test_loss_gap": abs(h1["test_loss"][-1] - h8["test_loss"][-1]),
                "returned_on_one_device": all(
                    len(x.sharding.device_set) == 1 for x in jax.tree.leaves(many)
                    if isinstance(x, jax.Array)
                ),
            }

    # Loaders, and `devices=` instead of a mesh (the same mesh: no new compilation).
    model, step, split, one = reference["float64", "bptt/offline"]
    loaders = Loaders(
        ArrayLoader(split.train_x, split.train_y, 8), ArrayLoader(split.test_x, split.test_y, 4)
    )
    eight, _, seen = train(model, step, loaders, devices=jax.devices())
    out["loaders"] = {"gap": gap(one, eight), "devices_per_batch": sorted(set(seen))}

    # Stop on 8 devices after 2 updates, resume on one: the uninterrupted model.
    import tempfile

    folder = tempfile.mkdtemp()
    train(model, step, split, mesh=mesh, checkpoint_dir=folder, max_steps=2)
    resumed, _, seen = train(model, step, split, checkpoint_dir=folder, resume=True)
    out["resume 8 -> 1 device"] = {"gap": gap(one, resumed), "updates": len(seen)}

    out["indivisible batch"] = error(lambda: train(model, step, split, batch_size=6, mesh=mesh))
    odd = Loaders(ArrayLoader(split.train_x, split.train_y, 6), loaders.test)
    out["indivisible loader"] = error(lambda: train(model, step, odd, mesh=mesh))

    # compare: four seeds over four devices, one per device (OTTT: with gradient
    # similarity to BPTT).
    def network(key):
        return eqslax.feedforward((4, 8, 2), key=key, readout="li")

    options = dict(
        seeds=4, epochs=1, batch_size=8, progress=False, similarity_every=2, trajectory_every=2
    )
    alone = eqslax.compare(network, ["ottt"], data, loss, **options).runs["ottt"]
    spread = eqslax.compare(network, ["ottt"], data, loss, devices=jax.devices()[:4], **options)
    spread = spread.runs["ottt"]
    curves = [
        abs(u - v)
        for x, y in zip(alone.seeds, spread.seeds)
        for k in x.similarity_curves
        for u, v in zip(x.similarity_curves[k], y.similarity_curves[k])
    ]
    out["compare over 4 devices"] = {
        "devices": [alone.devices, spread.devices],
        "gap": max(gap(x.model, y.model) for x, y in zip(alone.seeds, spread.seeds)),
        "history_gap": max(
            abs(u - v)
            for x, y in zip(alone.seeds, spread.seeds)
            for key in ("train_loss", "test_loss", "test_accuracy")
            for u, v in zip(x.history[key], y.history[key])
        ),
        "trajectory_gap": max(
            float(np.max(np.abs(x.trajectory - y.trajectory)))
            for x, y in zip(alone.seeds, spread.seeds)
        ),
        "similarity_points": len(curves),
        "similarity_gap": max(curves),
        "memory": [alone.peak_memory_bytes, spread.peak_memory_bytes],
        "returned_on_one_device": all(
            len(x.sharding.device_set) == 1
            for seed in spread.seeds
            for x in jax.tree.leaves(eqx.filter(seed.model, eqx.is_array))
        ),
    }
    out["compare 3 seeds on 4 devices"] = error(
        lambda: eqslax.compare(network, ["ottt"], data, loss, **dict(options, seeds=3),
                               devices=jax.devices()[:4])
    )
    print(json.dumps(out))
    """
)


TWO_PROCESSES = textwrap.dedent(
    """
    import json
    import sys

    import equinox as eqx
    import jax
    import numpy as np
    import optax

    import eqslax
    from eqslax import distributed

    process, port, folder, result = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    distributed.initialize(
        f"127.0.0.1:{port}", num_processes=2, process_id=process, initialization_timeout=60
    )
    jax.config.update("jax_enable_x64", True)
    from eqslax.data import randman

    data = randman(jax.random.key(0), n_classes=2, n_units=4, n_steps=6, samples_per_class=25)
    model = eqslax.feedforward((4, 8, 2), key=jax.random.key(1), readout="li")
    step = eqslax.train_offline(model, eqslax.PerStep(), optax.adam(1e-2))
    model, history = eqslax.fit(
        model, step, data, epochs=1, batch_size=8, key=jax.random.key(2), progress=False,
        mesh=distributed.data_mesh(), checkpoint_dir=folder,
    )
    leaves = jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array))
    np.savez(f"{result}-{process}.npz", *[np.asarray(x) for x in leaves])
    history.pop("epoch_time")
    info = {
        "processes": jax.process_count(),
        "devices": jax.device_count(),
        "local_devices": jax.local_device_count(),
        "main": distributed.is_main_process(),
        "history": history,
    }
    with open(f"{result}-{process}.json", "w") as f:
        json.dump(info, f)
    """
)


def _child(script: str, env: dict, timeout: float) -> dict:
    """Run `script` in a fresh Python; its last line of output is a JSON object."""
    env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu", **env)
    proc = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def eight_devices():
    flags = "--xla_force_host_platform_device_count=8 --xla_cpu_use_fusion_emitters=false"
    return _child(EIGHT_DEVICES, {"XLA_FLAGS": flags}, timeout=300)


@pytest.mark.parametrize(
    "dtype, rule, tolerance",
    [
        ("float64", "bptt/offline", 1e-12),
        ("float64", "ostl/online", 1e-12),
        ("float64", "ottt/deferred", 1e-12),
        ("float64", "fptt", 1e-12),
        ("float32", "bptt/offline", 1e-6),
        ("float32", "ostl/deferred", 1e-6),
        ("float32", "ottt/online", 1e-6),
    ],
)
def test_data_parallel_fit_equals_one_device(eight_devices, dtype, rule, tolerance):
    assert eight_devices["devices"] == 8
    row = eight_devices[f"{dtype} {rule}"]
    assert row["updates"] == 5 and row["devices_per_batch"] == [8]
    assert row["dtype"] == dtype
    assert row["gap"] <= tolerance, row
    assert row["train_loss_gap"] <= tolerance and row["test_loss_gap"] <= tolerance, row
    assert row["returned_on_one_device"]


def test_loaders_and_devices_argument(eight_devices):
    row = eight_devices["loaders"]
    assert row["devices_per_batch"] == [8]
    assert row["gap"] <= 1e-12


def test_resume_on_a_different_number_of_devices(eight_devices):
    row = eight_devices["resume 8 -> 1 device"]
    assert row["updates"] == 3  # 2 before the checkpoint, 3 after
    assert row["gap"] <= 1e-12


def test_indivisible_global_batch_is_refused_before_any_work(eight_devices):
    message = eight_devices["indivisible batch"]
    assert message.startswith("fit: `batch_size` must be a multiple of the number of devices (8)")
    assert "got 6" in message
    message = eight_devices["indivisible loader"]
    assert "the training loader's `batch_size` must be a multiple" in message
    assert "got 6" in message


def test_compare_with_seeds_over_devices_equals_one_device(eight_devices):
    row = eight_devices["compare over 4 devices"]
    assert row["devices"] == [1, 4]
    assert row["gap"] <= 1e-12 and row["history_gap"] <= 1e-12, row
    assert row["trajectory_gap"] <= 1e-12, row
    assert row["similarity_points"] > 0 and row["similarity_gap"] <= 1e-10, row
    assert row["returned_on_one_device"]
    # each device holds one seed of the four: its share of the memory is smaller
    single, share = row["memory"]
    assert share < single
    message = eight_devices["compare 3 seeds on 4 devices"]
    assert message.startswith(
        "compare: the number of `seeds` must be a multiple of the number of devices (4)"
    )
    assert "got 3" in message


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_train_like_one(tmp_path):
    """Two JAX processes with two CPU devices each, joined by `jax.distributed` (gloo),
    train one model data-parallel over the four devices; both end with the model one
    process trains alone, and only process 0 writes the checkpoint."""
    script, folder, result = tmp_path / "worker.py", tmp_path / "run", tmp_path / "result"
    script.write_text(TWO_PROCESSES)
    port = str(_free_port())
    env = dict(
        os.environ,
        PYTHONPATH=ROOT,
        JAX_PLATFORMS="cpu",
        XLA_FLAGS="--xla_force_host_platform_device_count=2 --xla_cpu_use_fusion_emitters=false",
    )
    command = [sys.executable, str(script), "", port, str(folder), str(result)]
    workers = []
    try:
        for process in (0, 1):
            command[2] = str(process)
            workers.append(
                subprocess.Popen(
                    list(command), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
                )
            )
        logs = [w.communicate(timeout=150)[0].decode(errors="replace") for w in workers]
    finally:
        for worker in workers:  # a worker left waiting for its peer must not outlive us
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    for worker, log in zip(workers, logs):
        assert worker.returncode == 0, log[-4000:]

    data = randman(jax.random.key(0), n_classes=2, n_units=4, n_steps=6, samples_per_class=25)
    model = eqslax.feedforward((4, 8, 2), key=jax.random.key(1), readout="li")
    step = eqslax.train_offline(model, eqslax.PerStep(), optax.adam(1e-2))
    alone, history = eqslax.fit(
        model, step, data, epochs=1, batch_size=8, key=jax.random.key(2), progress=False
    )
    expected = jax.tree.leaves(eqx.filter(alone, eqx.is_inexact_array))
    history.pop("epoch_time")
    for process in (0, 1):
        with open(f"{result}-{process}.json") as f:
            info = json.load(f)
        assert (info["processes"], info["devices"], info["local_devices"]) == (2, 4, 2)
        assert info["main"] == (process == 0)
        np.testing.assert_allclose(info["history"]["train_loss"], history["train_loss"], atol=1e-12)
        assert info["history"]["test_accuracy"] == history["test_accuracy"]
        with np.load(f"{result}-{process}.npz") as saved:
            got = [saved[f"arr_{i}"] for i in range(len(saved.files))]
        assert len(got) == len(expected)
        for a, b in zip(got, expected):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
    assert sorted(os.listdir(folder)) == ["checkpoint.eqx", "history.json"]
    resumed = eqslax.load_checkpoint(
        str(folder / "checkpoint.eqx"),
        eqslax.Checkpoint(
            model, step.init(model), jax.numpy.asarray(0, "int32"), jax.random.key(2)
        ),
    )
    for a, b in zip(jax.tree.leaves(eqx.filter(resumed.model, eqx.is_inexact_array)), expected):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


# What needs no second device: the helpers on this process's one device, and the checks.


def test_one_device_mesh_helpers():
    mesh = eqslax.distributed.data_mesh()
    assert mesh.axis_names == ("data",) and mesh.size == jax.device_count()
    xs, ys = jax.numpy.ones((4, 3, 2)), jax.numpy.arange(4)
    sharded_xs, sharded_ys = eqslax.distributed.shard_batch((xs, ys), mesh)
    assert sharded_xs.sharding.spec == jax.sharding.PartitionSpec("data")
    np.testing.assert_array_equal(sharded_ys, ys)
    model = eqslax.distributed.replicate(eqslax.feedforward((2, 3), key=jax.random.key(0)), mesh)
    assert all(
        x.sharding.is_fully_replicated for x in jax.tree.leaves(eqx.filter(model, eqx.is_array))
    )
    assert eqslax.distributed.is_main_process()


def test_mesh_arguments_are_checked():
    data = randman(jax.random.key(0), n_classes=2, n_units=4, n_steps=4, samples_per_class=5)
    model = eqslax.feedforward((4, 2), key=jax.random.key(1), readout="li")
    step = eqslax.train_offline(model, eqslax.PerStep(), optax.adam(1e-2))

    def fit(**options):
        eqslax.fit(model, step, data, epochs=1, batch_size=2, key=jax.random.key(2), **options)

    mesh = eqslax.distributed.data_mesh()
    with pytest.raises(ValueError, match="pass `mesh` or `devices`, not both"):
        fit(mesh=mesh, devices=jax.devices())
    # the type checker or fit itself: either names the argument
    with pytest.raises(TypeError, match="parameter 'mesh'|`mesh` must be a jax.sharding.Mesh"):
        fit(mesh=jax.devices())
    square = jax.sharding.Mesh(np.asarray(jax.devices()).reshape(1, 1), ("a", "b"))
    with pytest.raises(ValueError, match=r"`mesh` must have one axis .* got axes \('a', 'b'\)"):
        fit(mesh=square)
    with pytest.raises(TypeError, match="`devices` must hold jax devices, got an empty"):
        fit(devices=[])
    with pytest.raises(ValueError, match="names a device more than once"):
        eqslax.distributed.data_mesh(jax.devices() * 2)
    with pytest.raises(ValueError, match=r"`process_id` must be in 0..1 \(num_processes = 2\)"):
        eqslax.distributed.initialize("127.0.0.1:1", num_processes=2, process_id=2)
