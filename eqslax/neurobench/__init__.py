"""NeuroBench (Yik et al. 2025) for eqslax models: the harness, its metrics and data sets.

Follows NeuroBench 2.x's names and counting rules, re-implemented for JAX: activity is
read from `eqslax.record` instead of PyTorch hooks.

```python
from eqslax import neurobench as nb

bench = nb.Benchmark(
    model, data, postprocessors=[nb.ChooseMaxCount()],
    metrics=[[nb.Footprint, nb.ConnectionSparsity],
             [nb.ClassificationAccuracy, nb.SynapticOperations]],
)
results = bench.run()  # {"Footprint": ..., "SynapticOperations": {...}, ...}
```

Data: any iterable of `(xs, ys)` batches, `xs` (batch, time, *in), or of
`(xs, ys, mask)` batches of padded sequences (only their real steps count), such as an
`eqslax.data` loader; a split with
`test_x`/`test_y` such as `eqslax.data.randman`; `SHDBatches` or
`load_shd` for the Spiking Heidelberg Digits from a local file (needs `h5py`);
`mackey_glass` for the chaotic forecasting task.
"""

from ..data._shd import SHDBatches as SHDBatches, load_shd as load_shd
from ._activity import (
    Activity as Activity,
    LinearMap as LinearMap,
    NeuronActivity as NeuronActivity,
    record_activity as record_activity,
)
from ._counts import BatchCounts as BatchCounts, activity_counts as activity_counts
from ._harness import (
    Batches as Batches,
    Benchmark as Benchmark,
    neurobench_metrics as neurobench_metrics,
)
from ._mackey_glass import (
    MackeyGlassSplit as MackeyGlassSplit,
    mackey_glass as mackey_glass,
    mackey_glass_series as mackey_glass_series,
)
from ._processors import Aggregate as Aggregate, ChooseMaxCount as ChooseMaxCount
from ._static import (
    AbstractStaticMetric as AbstractStaticMetric,
    ConnectionSparsity as ConnectionSparsity,
    Footprint as Footprint,
    ParameterCount as ParameterCount,
)
from ._workload import (
    MSE as MSE,
    R2 as R2,
    SMAPE as SMAPE,
    AbstractMeanMetric as AbstractMeanMetric,
    AbstractWorkloadMetric as AbstractWorkloadMetric,
    ActivationSparsity as ActivationSparsity,
    ClassificationAccuracy as ClassificationAccuracy,
    MembraneUpdates as MembraneUpdates,
    SynapticOperations as SynapticOperations,
    WorkloadBatch as WorkloadBatch,
)
