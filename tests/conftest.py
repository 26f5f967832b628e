import os

os.environ.setdefault("MPLBACKEND", "Agg")
# XLA's CPU fusion emitters take about twice as long to compile the small programs the
# tests build (every test compiles its own rule); the classic emitters give the same
# float64 results. A flag the caller already set wins.
if "xla_cpu_use_fusion_emitters" not in os.environ.get("XLA_FLAGS", ""):
    flags = os.environ.get("XLA_FLAGS", "")
    os.environ["XLA_FLAGS"] = f"{flags} --xla_cpu_use_fusion_emitters=false".strip()

import jax  # noqa: E402

# The identities of learning rules are checked to 1e-10: the suite runs in float64.
jax.config.update("jax_enable_x64", True)
