r"""BPTT speed on a GPU, beside the Slax paper's A100 numbers (Fig. 11).

The Slax paper's Fig. 11 task at its sizes: three blocks ``Linear(n, n) -> LIF(n)``,
$T = 500$ steps, a batch of 64, float32, the forward and backward pass of the summed
output spikes, for $n$ = 1024, 2048, 4096 and 6144. This script runs
`benchmarks.bptt_speed` with those settings (eqslax with both schedules and the best scan
unroll of 1, 2, 4 and 8, the hand-written scans and the matmul floor, all checked
against each other before timing) and sets each size's time beside the paper's A100
seconds for Slax and Spyx. Those were measured on another GPU (an A100, not the one
here) and without `block_until_ready`, so the comparison says how far the hardware and
the code moved together, not which library is faster; the same-run ratios against the
hand scans and the matmul floor are the fair ones.

```bash
python -m benchmarks.gpu_bptt --out DIR          # needs a GPU (pip install "eqslax[gpu]")
python -m benchmarks.gpu_bptt --cpu --sizes 32 --steps 20 --out DIR   # a dry run
```

It writes ``results.json`` (every number of `bptt_speed` plus the paper's) and
``table.md`` into `--out`, and prints the table.
"""

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

import jax

from . import bptt_speed
from ._common import markdown_table, write_json, write_text

# Slax paper Fig. 11 (its benchmark notebook), A100, forward + backward seconds.
PAPER_A100_S = {
    "slax": {1024: 0.01, 2048: 0.03, 4096: 0.08, 6144: 0.16},
    "spyx": {1024: 0.02, 2048: 0.03, 4096: 0.10, 6144: 0.19},
}
HEADERS = (
    "size",
    "eqslax step s",
    "eqslax layer-wise s",
    "unroll",
    "hand scan s",
    "hand layer-wise s",
    "matmul floor s",
    "best eqslax / best hand",
    "best eqslax / matmul",
    "train step s",
    "compile s (step, layer-wise)",
    "paper A100 Slax s",
    "paper A100 Spyx s",
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu_bptt", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--sizes", default="1024,2048,4096,6144", help="units per layer")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=20, help="timed rounds (the paper: 20)")
    parser.add_argument("--unrolls", default="1,2,4,8", help="scan unroll factors tried")
    parser.add_argument("--out", default="benchmark_results/gpu_bptt")
    parser.add_argument("--cpu", action="store_true", help="run without a GPU (a dry run)")
    return parser.parse_args(argv)


def best(row: dict[str, Any], names: Sequence[str]) -> float:
    return min(row[name] for name in names)


def table(rows: Sequence[dict[str, Any]]) -> str:
    lines = []
    for r in rows:
        ours = best(r, ("eqslax_s", "eqslax_layerwise_s"))
        paper = {lib: PAPER_A100_S[lib].get(r["size"], "-") for lib in PAPER_A100_S}
        lines.append(
            (
                r["size"],
                r["eqslax_s"],
                r["eqslax_layerwise_s"],
                r["unroll"],
                r["hand_s"],
                r["hand_layerwise_s"],
                r["matmul_s"],
                ours / best(r, ("hand_s", "hand_layerwise_s")),
                ours / r["matmul_s"],
                r["train_step_s"],
                f"{r['compile_s']:.3g}, {r['compile_layerwise_s']:.3g}",
                paper["slax"],
                paper["spyx"],
            )
        )
    return markdown_table(HEADERS, lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if not args.cpu and jax.default_backend() != "gpu":
        raise SystemExit(
            f"benchmarks.gpu_bptt: JAX sees no GPU ({jax.devices()}); install "
            '"eqslax[gpu]" on a CUDA machine, or pass --cpu for a dry run.'
        )
    speed_argv = [
        "--sizes",
        args.sizes,
        "--steps",
        str(args.steps),
        "--batch",
        str(args.batch),
        "--repeats",
        str(args.repeats),
        "--unrolls",
        args.unrolls,
        "--no-peers",
        "--out",
        os.path.join(args.out, "bptt_speed"),
    ] + ([] if args.cpu else ["--gpu"])
    speed = bptt_speed.main(speed_argv)
    text = table(speed["rows"])
    results = {
        "benchmark": "gpu_bptt",
        "command": "python -m benchmarks.gpu_bptt "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "paper_a100_s": {lib: {str(k): v for k, v in t.items()} for lib, t in PAPER_A100_S.items()},
        "bptt_speed": speed,
        "table": text,
    }
    print("\n" + text)
    write_json(os.path.join(args.out, "results.json"), results)
    write_text(os.path.join(args.out, "table.md"), text + "\n")
    return results


if __name__ == "__main__":
    main()
