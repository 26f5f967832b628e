"""The learning rules ``eqslax compare`` knows, by command-line name."""

from collections.abc import Callable

from .._rules import (
    BPTT,
    OSTL,
    OTPE,
    OTTT,
    RTRL,
    AbstractLearningRule,
    ApproxOTPE,
    EProp,
    TruncatedBPTT,
)

# name -> (factory, how it trains: "offline" or "online", a one-line description)
RULES: dict[str, tuple[Callable[[], AbstractLearningRule], str, str]] = {
    "bptt": (BPTT, "offline", "backpropagation through time (the reference)"),
    "tbptt1": (lambda: TruncatedBPTT(1), "offline", "BPTT truncated to one step"),
    "rtrl": (RTRL, "online", "real-time recurrent learning (exact)"),
    "ostl": (OSTL, "online", "online spatio-temporal learning (per-layer exact)"),
    "ottt": (OTTT, "online", "online training through time (presynaptic traces)"),
    "otpe": (OTPE, "online", "online training with postsynaptic estimates"),
    "aotpe": (ApproxOTPE, "online", "approximate OTPE"),
    "eprop": (EProp, "online", "e-prop with symmetric feedback"),
}


def make_rule(name: str) -> tuple[AbstractLearningRule, str]:
    """The rule called ``name`` and its training mode; a clear error for unknown names."""
    if name not in RULES:
        raise ValueError(f"unknown rule {name!r}; valid rules: {', '.join(sorted(RULES))}.")
    factory, mode, _ = RULES[name]
    return factory(), mode
