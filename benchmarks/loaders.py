r"""Epoch time of `eqslax.fit` by where the data live: prestaged on the device, streamed
from the host one batch at a time, and streamed with batches prefetched on a background
thread.

The task is `examples/digits.py`'s (scikit-learn's 8x8 digits, latency-coded over 16
steps, 1437 training images, the 64-64-10 network, BPTT, batch 32); its
`loader_times` runs one epoch of each variant per round, after one epoch of each that
compiles, and reports the median per variant. Needs scikit-learn
(`pip install eqslax[examples]`).

Run ``python -m benchmarks.loaders --help`` for the options.
"""

import argparse
import importlib.util
from pathlib import Path

import jax

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "digits.py"


def _digits_example():
    spec = importlib.util.spec_from_file_location("digits_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="epochs of each variant")
    parser.add_argument("--steps", type=int, default=16, help="latency window T")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    if min(args.rounds, args.steps, args.hidden, args.batch_size) < 1:
        parser.error("--rounds, --steps, --hidden and --batch-size must be positive")
    example = _digits_example()
    data = example.digits(args.steps, dtype=jax.numpy.float32)
    result = example.loader_times(
        data, hidden=args.hidden, batch_size=args.batch_size, lr=5e-3, epochs=args.rounds
    )
    print(f"one BPTT epoch on {result['device']}, median of {args.rounds} rounds:")
    for name, seconds in result["epoch_time_s"].items():
        print(f"  {name}: {seconds:.4f} s")
    return result


if __name__ == "__main__":
    main()
