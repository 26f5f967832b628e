"""Cross-check ``eqslax.neurobench`` against the PyTorch NeuroBench package.

The same networks (identical weights) are benchmarked by NeuroBench 2.x on snnTorch/PyTorch
and by ``eqslax.neurobench`` on eqslax, and every metric is compared. snnTorch's ``Leaky``
(subtractive reset applied at the next step, not decayed) is eqslax's
``LIF(decay=beta, reset_decay=False)``. Footprints are printed but not compared: they
count each framework's buffers.

Needs ``torch``, ``snntorch`` and ``neurobench`` (not eqslax dependencies); without them the
script says so and exits. Usage: ``python -m benchmarks.neurobench_crosscheck``.
"""

import importlib.util
import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import eqslax
from eqslax import neurobench as nb

REQUIRED = ("torch", "snntorch", "neurobench")


def _missing() -> list[str]:
    return [name for name in REQUIRED if importlib.util.find_spec(name) is None]


def _torch_net(sizes, beta, seed, spiking=True):
    import snntorch as snn
    import torch

    torch.manual_seed(seed)
    layers = []
    for index, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
        layers.append(torch.nn.Linear(n_in, n_out))
        last = index == len(sizes) - 2
        if spiking:
            layers.append(snn.Leaky(beta=beta, init_hidden=True, output=last))
        else:
            layers.append(torch.nn.Sigmoid() if not last else torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


def _eqslax_twin(net, beta, spiking=True):
    import torch

    layers = []
    for module in net:
        if isinstance(module, torch.nn.Linear):
            linear = eqx.nn.Linear(module.in_features, module.out_features, key=jax.random.key(0))
            weight = jnp.asarray(module.weight.detach().numpy())
            bias = jnp.asarray(module.bias.detach().numpy())
            layers.append(eqx.tree_at(lambda m: (m.weight, m.bias), linear, (weight, bias)))
        elif spiking:
            layers.append(eqslax.LIF(layers[-1].out_features, decay=beta, reset_decay=False))
        elif isinstance(module, torch.nn.Sigmoid):
            layers.append(eqx.nn.Lambda(jax.nn.sigmoid))
        else:
            layers.append(eqx.nn.Lambda(jax.nn.relu))
    return eqslax.Connect(layers)


def _neurobench_torch(net, xs, ys, spiking, batch_size):
    import torch
    from neurobench.benchmarks import Benchmark
    from neurobench.metrics.static import ConnectionSparsity, Footprint, ParameterCount
    from neurobench.metrics.workload import (
        ActivationSparsity,
        ClassificationAccuracy,
        MembraneUpdates,
        SynapticOperations,
    )
    from neurobench.models import SNNTorchModel, TorchModel
    from neurobench.processors.postprocessors import ChooseMaxCount

    dataset = torch.utils.data.TensorDataset(torch.tensor(xs), torch.tensor(ys))
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
    model = SNNTorchModel(net) if spiking else TorchModel(net)
    workload = [ActivationSparsity, SynapticOperations]
    if spiking:
        workload += [ClassificationAccuracy, MembraneUpdates]
    post = [ChooseMaxCount()] if spiking else []
    bench = Benchmark(
        model, loader, [], post, [[Footprint, ConnectionSparsity, ParameterCount], workload]
    )
    return bench.run(quiet=True)


def _compare(name, theirs, ours) -> bool:
    ok = True
    print(f"\n{name}")
    for key, value in theirs.items():
        mine = ours.get(key)
        if key == "Footprint":
            print(f"  {key:24s} neurobench {value!r:>14}  eqslax {mine!r:>14}  (not compared)")
            continue
        if isinstance(value, dict):
            same = all(np.isclose(value[k], mine[k], rtol=1e-6) for k in value)
        else:
            same = bool(np.isclose(value, mine, rtol=1e-6))
        ok &= same
        print(f"  {key:24s} neurobench {value!r}  eqslax {mine!r}  {'ok' if same else 'DIFFERS'}")
    return ok


def main() -> int:
    missing = _missing()
    if missing:
        print(f"neurobench_crosscheck: skipped, not installed: {', '.join(missing)}")
        return 0
    rng = np.random.default_rng(0)
    ok = True
    # A spiking classifier on random spikes (batch-major, as NeuroBench expects).
    sizes, beta = (20, 64, 10), 0.9
    xs = (rng.random((37, 25, 20)) < 0.3).astype(np.float32)
    ys = rng.integers(0, 10, 37)
    net = _torch_net(sizes, beta, seed=0)
    theirs = _neurobench_torch(net, xs, ys, spiking=True, batch_size=16)
    ours = nb.Benchmark(
        _eqslax_twin(net, beta),
        nb.Batches(xs, ys, 16),
        postprocessors=[nb.ChooseMaxCount()],
        metrics=[
            [nb.Footprint, nb.ConnectionSparsity, nb.ParameterCount],
            [
                nb.ActivationSparsity,
                nb.SynapticOperations,
                nb.ClassificationAccuracy,
                nb.MembraneUpdates,
            ],
        ],
    ).run(quiet=True)
    ok &= _compare("SNN 20-64-10, Leaky beta 0.9", theirs, ours)
    # A graded-valued ANN, one step per sample (TorchModel calls the net once).
    net = _torch_net((20, 25, 25), beta, seed=1, spiking=False)
    xs = rng.normal(size=(9, 20)).astype(np.float32)
    ys = np.zeros(9, np.int64)
    theirs = _neurobench_torch(net, xs, ys, spiking=False, batch_size=4)
    ours = nb.Benchmark(
        _eqslax_twin(net, beta, spiking=False),
        nb.Batches(xs[:, None, :], ys, 4),
        metrics=[
            [nb.Footprint, nb.ConnectionSparsity, nb.ParameterCount],
            [nb.ActivationSparsity, nb.SynapticOperations],
        ],
    ).run(quiet=True)
    ok &= _compare("ANN 20-25-25, sigmoid/ReLU", theirs, ours)
    print("\nall metrics agree" if ok else "\nsome metrics differ")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
