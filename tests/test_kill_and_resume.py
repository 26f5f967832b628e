"""A training process killed with SIGKILL at random points, inside the checkpoint save
included, resumes to the model and history of an uninterrupted run, bit for bit.

Each run is a real subprocess. It kills itself at a chosen rename of a file that `fit`
writes (the checkpoint or its readable `history.json` copy), in one of three phases:
just before the rename (a complete temporary file is left behind), just after it (the
checkpoint is in place, `history.json` not yet rewritten), or after cutting the
temporary file to half its length (a write interrupted half-way). A last, unkilled run
finishes; it must equal a run that was never interrupted, and no temporary file may be
left in the folder.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np

CHILD = textwrap.dedent(
    """
    import json, os, signal, sys

    import equinox as eqx
    import jax
    import numpy as np
    import optax

    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_compilation_cache_dir", sys.argv[3])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)

    import eqslax
    from eqslax.data import randman

    folder, result = sys.argv[1], sys.argv[2]
    kill_at, phase = int(os.environ.get("KILL_AT", "0")), os.environ.get("KILL_PHASE", "")
    renames = 0
    real_replace = os.replace


    def replace(src, dst):
        global renames
        renames += 1
        if renames == kill_at:
            if phase == "half":
                os.truncate(src, os.path.getsize(src) // 2)
            if phase in ("before", "half"):
                os.kill(os.getpid(), signal.SIGKILL)
            real_replace(src, dst)
            os.kill(os.getpid(), signal.SIGKILL)
        return real_replace(src, dst)


    os.replace = replace
    data = randman(jax.random.key(0), n_classes=2, n_units=6, n_steps=6, samples_per_class=10)
    model = eqslax.feedforward((6, 8, 2), key=jax.random.key(1), readout="li")
    step = eqslax.train_offline(model, eqslax.Accumulated(reduce="mean"), optax.adam(5e-2))
    model, history = eqslax.fit(
        model, step, data, epochs=3, batch_size=4, key=jax.random.key(2), progress=False,
        checkpoint_dir=folder, checkpoint_every=1, resume=True,
    )
    leaves = jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_array))
    np.savez(result, *[np.asarray(leaf) for leaf in leaves])
    history.pop("epoch_time")
    with open(result + ".json", "w") as f:
        json.dump(history, f)
    """
)


def run(tmp_path, folder, name, kill_at=0, phase=""):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = dict(os.environ, KILL_AT=str(kill_at), KILL_PHASE=phase, JAX_PLATFORMS="cpu")
    result = tmp_path / name
    cache = tmp_path / "xla-cache"
    proc = subprocess.run(
        [sys.executable, str(script), str(folder), str(result), str(cache)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return proc, result


def outcome(result):
    with np.load(f"{result}.npz") as arrays:
        leaves = [arrays[k] for k in sorted(arrays.files, key=lambda k: int(k.split("_")[1]))]
    with open(f"{result}.json") as f:
        return leaves, json.load(f)


def test_sigkill_anywhere_then_resume_equals_an_uninterrupted_run(tmp_path):
    proc, reference = run(tmp_path, tmp_path / "straight", "reference")
    assert proc.returncode == 0, proc.stderr[-3000:]
    expected_leaves, expected_history = outcome(reference)
    assert expected_history["epoch"] == [1, 2, 3]

    # 3 epochs x 3 batches, a checkpoint and a history copy per step: 18 renames in all.
    rng = np.random.default_rng(0)
    phases = ["before", "after", "half"]
    folder = tmp_path / "killed"
    kills = 0
    for phase in phases:
        kill_at = int(rng.integers(2, 9))  # counted from each process's start
        proc, _ = run(tmp_path, folder, "killed", kill_at, phase)
        assert proc.returncode == -signal.SIGKILL, (phase, kill_at, proc.stderr[-3000:])
        kills += 1
    proc, resumed = run(tmp_path, folder, "resumed")
    assert proc.returncode == 0, proc.stderr[-3000:]
    leaves, history = outcome(resumed)
    assert kills == len(phases)
    assert len(leaves) == len(expected_leaves)
    assert all(np.array_equal(a, b) for a, b in zip(leaves, expected_leaves))
    assert history == expected_history
    assert sorted(os.listdir(folder)) == ["checkpoint.eqx", "history.json"]
    with open(folder / "history.json") as f:
        copy = json.load(f)
    copy.pop("epoch_time")
    assert copy == expected_history
