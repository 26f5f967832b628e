"""snnTorch -> NIR -> eqslax: a graph written by ``snntorch.export_to_nir`` reproduces
snnTorch's spikes on the same input.

Runs only where snnTorch, torch and nirtorch are installed (optional peers of the test suite).
snnTorch's ``Leaky`` (default ``reset_mechanism="subtract"``, delayed reset) is eqslax's
``LIF(reset="subtract", reset_decay=False)``, which ``convention="snntorch"`` selects; its
exporter writes ``tau = dt / (1 - beta)``, ``r = tau / dt`` with ``dt = 1e-4``.
"""

import inspect
import warnings

import jax.numpy as jnp
import numpy as np
import pytest

snntorch = pytest.importorskip("snntorch")
torch = pytest.importorskip("torch")
pytest.importorskip("nirtorch")  # snntorch.export_nir imports it

import nir  # noqa: E402
from snntorch import utils as snn_utils  # noqa: E402  (``import snntorch`` does not load it)
from snntorch.export_nir import export_to_nir  # noqa: E402

import eqslax  # noqa: E402
from eqslax.nir import from_nir, load_nir  # noqa: E402

T = 100


def _network():
    torch.manual_seed(0)
    fc1, fc2 = torch.nn.Linear(4, 8), torch.nn.Linear(8, 3)
    with torch.no_grad():  # strong enough weights that the network spikes
        fc1.weight.mul_(3.0)
        fc2.weight.mul_(3.0)
    # Per-neuron beta and threshold, so that the exported parameters have the layer's shape.
    lif1 = snntorch.Leaky(beta=torch.full((8,), 0.875), threshold=torch.ones(8), init_hidden=True)
    lif2 = snntorch.Leaky(beta=torch.full((3,), 0.75), threshold=torch.ones(3), init_hidden=True)
    return torch.nn.Sequential(fc1, lif1, fc2, lif2)


def _export(net):
    options = {}
    if "ignore_dims" in inspect.signature(export_to_nir).parameters:
        options["ignore_dims"] = [0]  # the batch axis of the sample
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # nirtorch's extractor is deprecated
        warnings.simplefilter("ignore", UserWarning)
        return export_to_nir(net, torch.zeros(1, 4), **options)


def _snntorch_spikes(net, xs):
    snn_utils.reset(net)
    spikes = []
    with torch.no_grad():
        for x in xs:
            spikes.append(net(torch.as_tensor(x[None], dtype=torch.float32))[0].numpy())
    return np.array(spikes)


@pytest.mark.parametrize("via", ["memory", "file"])
def test_snntorch_export_imports_and_reproduces_spikes(via, tmp_path):
    net = _network()
    graph = _export(net)
    if via == "file":
        path = tmp_path / "snntorch.nir"
        nir.write(path, graph)
        model = load_nir(path, convention="snntorch")
    else:
        model = from_nir(graph, convention="snntorch")
    xs = np.random.default_rng(0).binomial(1, 0.4, size=(T, 4)).astype(np.float64)
    expected = _snntorch_spikes(net, xs)
    assert expected.sum() > 10
    _, got = eqslax.simulate(model, jnp.asarray(xs))
    np.testing.assert_array_equal(np.asarray(got), expected)
    lif = model.layers[1]
    assert (lif.reset, lif.reset_decay) == ("subtract", False)
    np.testing.assert_allclose(lif.decay, np.full(8, 0.875), rtol=1e-6)
