# %% [markdown]
# # 7. Real data and more than one device
#
# The tutorials so far trained on Randman, generated in memory. Real spiking data sets
# come as files of events, one recording per sample, and the recordings differ in
# length. This tutorial reads such a file batch by batch, encodes dense inputs as spikes,
# trains and compares rules from loaders, and then spreads the same training over
# several devices.
#
# ## A file in the SHD layout
#
# The Spiking Heidelberg Digits (Cramer et al. 2020) are spoken digits recorded by a
# cochlea model with 700 channels. `shd_train.h5` holds, per sample, the event times
# (`spikes/times`, seconds) and channels (`spikes/units`) as variable-length arrays, and
# the class in `labels`. eqslax downloads nothing. Here we write a small file in the same
# layout: three classes, each firing mostly in its own band of channels (the bands
# overlap, and half the events fall anywhere), in utterances of 0.4 to 1.4 s.

# %%
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import optax

import eqslax
import eqslax.encode
import eqslax.plot
from eqslax.data import ArrayLoader, Loaders, SHDLoader
from eqslax.distributed import data_mesh

started = time.perf_counter()
# EQSLAX_TUTORIALS=full runs the full sizes (small by default, as in CI)
full = os.environ.get("EQSLAX_TUTORIALS", "small") == "full"
n_train, n_test, n_steps = (240, 120, 50) if full else (48, 24, 25)
n_classes, max_time = 3, 1.4
folder = Path(tempfile.mkdtemp())
rng = np.random.default_rng(0)


def write_shd(path, count):
    """`count` utterances in the SHD layout; class c fires mostly channels 200c..200c+299."""
    vlen_times, vlen_units = h5py.vlen_dtype(np.float32), h5py.vlen_dtype(np.uint16)
    labels = np.arange(count) % n_classes
    with h5py.File(path, "w") as file:
        times = file.create_dataset("spikes/times", (count,), dtype=vlen_times)
        units = file.create_dataset("spikes/units", (count,), dtype=vlen_units)
        for i, label in enumerate(labels):
            duration = rng.uniform(0.4, max_time)
            events = int(rng.integers(60, 180))
            times[i] = np.sort(rng.uniform(0, duration, events)).astype(np.float32)
            band = 200 * label + rng.integers(0, 300, events)
            units[i] = np.where(rng.uniform(size=events) < 1 / 2,
                                rng.integers(0, 700, events), band).astype(np.uint16)
        file.create_dataset("labels", data=labels.astype(np.uint8))


write_shd(folder / "shd_train.h5", n_train)
write_shd(folder / "shd_test.h5", n_test)
train = SHDLoader(folder / "shd_train.h5", n_steps, 8, mask=True, max_time=max_time)
test = SHDLoader(folder / "shd_test.h5", n_steps, 64, mask=True, max_time=max_time)
print(f"{train.n_samples} training samples, {train.n_classes} classes, input {train.in_shape}, "
      f"{len(train)} batches of {train.batch_size}")
xs, ys, mask = train.batch(jax.random.key(0), 0)
print("one batch:", xs.shape, ys.shape, mask.shape, mask.dtype)
print("real steps of each sample:", mask.sum(axis=1))

# %% [markdown]
# A loader is random-access: `batch(key, i)` bins only the samples of batch `i` of the
# epoch that `key` orders, so the file never has to fit in memory. Each event at time
# $t$ goes to step $\lfloor t\,T/t_{max} \rfloor$. With `mask=True` the loader also yields
# `mask` `(batch, time)`, true up to each utterance's last event,
# $m_t = [t \le t_{last}]$. Every loss, rule and training step leaves the padded steps
# out: they give no loss and no learning signal, and time averages divide by each
# sample's own length.

# %%
dt = max_time / n_steps
real = int(mask[0].sum())
figure = eqslax.plot.raster(xs[0], dt=dt, marker_size=8,
                            title=f"class {int(ys[0])}: {real} real steps of {n_steps}")
axes = figure.axes[0]
axes.axvspan(real * dt, max_time, color="0.9", label="padding (mask false)")
axes.set_xlabel("time (s)")
axes.set_ylabel("channel")
axes.legend(loc="upper right")

# %% [markdown]
# ## Events from any file: `bin_events`
#
# Other recordings (N-MNIST, DVS gestures, your own sensor) come as structured arrays of
# events with fields `t`, `x` and optionally `y` and `p` (polarity).
# `eqslax.data.bin_events` counts them per time bin and position. Binning the first
# training utterance with bins of $t_{max}/T$ from $t_0 = 0$ gives the loader's raster.

# %%
with h5py.File(folder / "shd_train.h5", "r") as file:
    times, units = file["spikes/times"][0], file["spikes/units"][0]
events = np.zeros(len(times), dtype=[("t", np.float64), ("x", np.int64)])
events["t"], events["x"] = times, units
frames = eqslax.data.bin_events(events, (700,), dt=dt, t_start=0.0)
stored, _ = eqslax.data.load_shd(folder / "shd_train.h5", n_steps, max_time=max_time,
                                 index=[0])
print("frames", frames.shape, "events", int(frames.sum()))
print("same as the loader's raster:",
      np.array_equal(frames, stored[0, : len(frames)]) and not stored[0, len(frames):].any())

# %% [markdown]
# ## Dense inputs as spikes: `eqslax.encode`
#
# Dense data (pixels, features) becomes spikes with an encoder. `rate` draws an
# independent Bernoulli spike per input and step with probability $x_i$; `latency` makes
# each input spike once, earlier the larger it is, at step
# $\lfloor (T-1)(1-x_i) \rfloor$. Both return `(time, *shape)`; `jax.vmap` encodes a
# batch.

# %%
intensities = jnp.linspace(0.05, 1.0, 20)
rate_spikes = eqslax.encode.rate(intensities, n_steps, key=jax.random.key(1))
latency_spikes = eqslax.encode.latency(intensities, n_steps)
print("rate    spikes per input:", rate_spikes.sum(axis=0).astype(int))
print("latency spike step       :", jnp.argmax(latency_spikes, axis=0))
images = jax.random.uniform(jax.random.key(2), (4, 8, 8))
encoded = jax.vmap(lambda x, k: eqslax.encode.rate(x, n_steps, key=k))(
    images, jax.random.split(jax.random.key(3), 4))
print("a batch of 8x8 images, rate coded:", encoded.shape)

# %% [markdown]
# Sequences of different lengths that you hold in memory are padded with
# `eqslax.data.pad_sequences`. It returns the padded array and its mask, and an
# `ArrayLoader` with `mask=` yields `(xs, ys, mask)` batches like `SHDLoader(mask=True)`.
# With `buckets=` the length is the smallest bucket that holds the longest sequence, so a
# jitted step compiles once per bucket, not once per length.

# %%
sequences = [np.ones((length, 3), np.float32) for length in (4, 7, 5)]
padded, padded_mask = eqslax.data.pad_sequences(sequences, buckets=(8, 16))
print(padded.shape, padded_mask.astype(int))
loader = ArrayLoader(padded, np.array([0, 1, 0]), batch_size=3, mask=padded_mask)
print([part.shape for part in loader.batch(None, 0)])

# %% [markdown]
# ## Training from loaders
#
# `eqslax.fit` takes `eqslax.data.Loaders(train, test)` in place of arrays. The batch
# size is the train loader's, each epoch's order is drawn from `fold_in(key, epoch)`,
# and the test split is read in stored order. A loader's mask goes to the training step
# and to the metrics. Here BPTT trains on the masked batches, with the loss summed over
# each sample's real steps and divided by its length.

# %%
model = eqslax.feedforward((700, 32, n_classes), key=jax.random.key(4), readout="li")
loss = eqslax.Accumulated(reduce="mean")
learning_rate = 5e-3
step = eqslax.train_offline(model, loss, optax.adam(learning_rate))
epochs = 6 if full else 3
trained, history = eqslax.fit(model, step, Loaders(train, test), epochs=epochs,
                              key=jax.random.key(5), progress=False)
for epoch, (train_loss, accuracy) in enumerate(
        zip(history["train_loss"], history["test_accuracy"]), 1):
    print(f"epoch {epoch}: train loss {train_loss:.3f}, test accuracy {accuracy:.3f}")

# %% [markdown]
# ## Comparing rules from loaders
#
# `eqslax.compare` takes the same `Loaders`, masks included. Each seed draws its own
# initial model and its own order of the training batches, and every rule sees the same
# ones. The padded steps give no loss, no update (OTTT updates at every real step) and
# no metric; the gradient similarity to BPTT, which runs whole sequences, is not
# recorded for masked batches.

# %%
masked = Loaders(train, test)
result = eqslax.compare(model, ["bptt", "ottt"], masked, eqslax.PerStep(),
                        seeds=4 if full else 2, epochs=epochs, progress=False)
for name in result.rules:
    run = result.runs[name]
    accuracy = result.interval(name)
    print(f"{name:5s} test accuracy {accuracy.mean:.3f} ± {accuracy.half_width:.3f}  "
          f"({run.updates} updates, {run.time_per_epoch_s:.2f} s per epoch)")

# %% [markdown]
# ## More than one device
#
# `fit(..., mesh=...)` trains data-parallel: each batch is split along its batch axis
# over the devices, the model and the optimiser and rule states are replicated, and XLA
# reduces the gradients. `eqslax.distributed.data_mesh()` is a 1-D mesh with the axis
# `"data"` over every device JAX sees. The docs build sees one CPU device, so the mesh
# below has one device and the run checks that the sharded path changes nothing; the
# code is the same for eight GPUs.

# %%
print(jax.devices())
mesh = data_mesh()
print(mesh)
sharded, sharded_history = eqslax.fit(model, step, Loaders(train, test), epochs=epochs,
                                      key=jax.random.key(5), progress=False, mesh=mesh)
difference = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(
    jax.tree.leaves(eqslax.trainable(trained)), jax.tree.leaves(eqslax.trainable(sharded))))
print(f"max |data-parallel - plain| over the parameters: {difference:.1e}")
print("same history:", sharded_history["test_accuracy"] == history["test_accuracy"])

# %% [markdown]
# On $D$ devices each device holds $B/D$ of the $B$ samples of a batch, computes the sum
# of their gradients, and one all-reduce gives
# $\bar g = \frac1B\sum_{d=1}^{D}\sum_{b \in \mathcal B_d} g_b$: the one-device number up
# to the order of the floating-point additions. The batch size must be a multiple of
# $D$. The model `fit` returns is an ordinary one-device model.
#
# `compare(..., mesh=...)` spreads a rule's vmapped seeds over the devices instead, so
# each device trains `seeds / D` seeds; the number of seeds must be a multiple of $D$.

# %%
spread = eqslax.compare(model, ["bptt"], masked, eqslax.PerStep(), seeds=result.seeds,
                        epochs=epochs, progress=False, mesh=mesh)
difference = max(
    float(jnp.max(jnp.abs(a - b)))
    for spread_seed, seed in zip(spread.runs["bptt"].seeds, result.runs["bptt"].seeds)
    for a, b in zip(jax.tree.leaves(eqslax.trainable(spread_seed.model)),
                    jax.tree.leaves(eqslax.trainable(seed.model))))
print(f"seeds {spread.seeds} on {spread.runs['bptt'].devices} device(s): "
      f"max |spread - plain| over the models {difference:.1e}")

# %% [markdown]
# ### Eight simulated devices
#
# JAX fixes its devices when it is first imported. To try a real split on a laptop, set
# `XLA_FLAGS=--xla_force_host_platform_device_count=8` in the environment *before* Python
# imports JAX, e.g. `XLA_FLAGS=--xla_force_host_platform_device_count=8 python train.py`.
# One CPU then looks like eight devices that share its cores, so this checks a sharded
# program rather than speeding it up. The cell below runs such a script in a fresh
# process: the same `fit` as above on a mesh of 8 devices, each holding one sample of
# every batch of 8. The model it saves is compared with the one trained here on one
# device.

# %%
script = folder / "train.py"
script.write_text(f"""
import os, sys

import jax, numpy as np, optax
import eqslax
from eqslax import distributed
from eqslax.data import Loaders, SHDLoader

if "RANK" in os.environ:  # one process per host: join the others first
    distributed.initialize(os.environ["COORDINATOR"], int(os.environ["WORLD"]),
                           int(os.environ["RANK"]))
folder = sys.argv[1]
train = SHDLoader(f"{{folder}}/shd_train.h5", {n_steps}, 8, mask=True, max_time={max_time})
test = SHDLoader(f"{{folder}}/shd_test.h5", {n_steps}, 64, mask=True, max_time={max_time})
model = eqslax.feedforward((700, 32, 3), key=jax.random.key(4), readout="li")
loss = eqslax.Accumulated(reduce="mean")
step = eqslax.train_offline(model, loss, optax.adam({learning_rate}))
model, history = eqslax.fit(model, step, Loaders(train, test), epochs={epochs},
                            key=jax.random.key(5), progress=False,
                            mesh=distributed.data_mesh())
if distributed.is_main_process():
    print(len(jax.devices()), "devices:", jax.devices()[0], "...", jax.devices()[-1])
    print("test accuracy per epoch:", [round(a, 3) for a in history["test_accuracy"]])
    np.savez(f"{{folder}}/model.npz", *jax.tree.leaves(eqslax.trainable(model)))
""")
environment = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
                   JAX_PLATFORMS="cpu")
finished = subprocess.run([sys.executable, str(script), str(folder)], env=environment,
                          capture_output=True, text=True, check=True)
print(finished.stdout.strip())
with np.load(folder / "model.npz") as saved:
    eight = [saved[f"arr_{i}"] for i in range(len(saved.files))]
difference = max(float(np.max(np.abs(a - b)))
                 for a, b in zip(eight, jax.tree.leaves(eqslax.trainable(trained))))
print(f"max |8 devices - 1 device| over the parameters: {difference:.1e}")

# %% [markdown]
# The two models differ only through the order of the floating-point sums, in float32.
# The gap grows with the number of Adam updates, because Adam divides each gradient by
# its own running scale and so magnifies the rounding of gradients near zero; in float64
# the tests pin it below $10^{-12}$ ([More than one device](../distributed.md)).
#
# ### Several hosts
#
# The same script runs on several machines. Start one process per host (or per GPU),
# each with the same data, key and `fit` call, and let each join the others first:
# `eqslax.distributed.initialize(coordinator_address, num_processes, process_id)` is
# `jax.distributed.initialize` with CPU collectives (gloo) chosen, and it must come
# before any JAX computation. Above, the script does this when `RANK` is set, e.g.
# `COORDINATOR=10.0.0.1:1234 WORLD=4 RANK=0 python train.py data/` on the first host and
# `RANK=1`, `2`, `3` on the others. On Slurm, Open MPI or Cloud TPU the arguments may be
# left out: JAX reads them from the cluster.
#
# After it, `data_mesh()` spans every device of every process. Each process reads the
# same global batch and copies to its own devices only their parts, so no batch crosses
# the network; only process 0 (`is_main_process()`) writes checkpoints, so
# `checkpoint_dir` must be a folder every host sees. A checkpoint holds ordinary arrays
# and resumes on any number of devices. The guide has the details and what the tests
# pin.

# %%
print(f"this tutorial ran in {time.perf_counter() - started:.0f} s")
