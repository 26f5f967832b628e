import os

os.environ.setdefault("MPLBACKEND", "Agg")

import jax  # noqa: E402

# The identities of learning rules are checked to 1e-10: the suite runs in float64.
jax.config.update("jax_enable_x64", True)
