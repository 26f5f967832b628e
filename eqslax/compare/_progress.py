"""Live progress of one rule's training: a redrawn line on a terminal, plain lines
otherwise, nothing when quiet."""

import sys
import time


def seed_label(seeds) -> str:
    seeds = list(seeds)
    if len(seeds) == 1:
        return f"seed {seeds[0]}"
    if seeds == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"seeds {seeds[0]}-{seeds[-1]}"
    return "seeds " + ",".join(map(str, seeds))


class Progress:
    """Rule, seeds, epoch, batch, loss and an ETA, on standard error."""

    def __init__(self, enabled: bool, name: str, seeds, epochs: int, per_epoch: int, stream=None):
        self.enabled, self.epochs, self.per_epoch = enabled, epochs, per_epoch
        self.stream = stream or sys.stderr
        self.live = enabled and self.stream.isatty()
        self.prefix = f"[{name} {seed_label(seeds)}]"
        self.start = time.perf_counter()
        self.every = max(1, per_epoch // 4)
        self.total = epochs * per_epoch
        self.done = 0

    def batch(self, epoch: int, batch: int, loss: float) -> None:
        self.done += 1
        if not self.enabled:
            return
        spent = time.perf_counter() - self.start
        eta = spent / self.done * (self.total - self.done)
        line = (
            f"{self.prefix} epoch {epoch + 1}/{self.epochs} batch {batch}/{self.per_epoch} "
            f"loss {loss:.4f} eta {eta:.0f} s"
        )
        if self.live:
            self.stream.write("\r" + line)
            self.stream.flush()
        elif batch % self.every == 0:
            self.stream.write(line + "\n")
            self.stream.flush()

    def epoch(self, epoch: int, seconds: float, accuracies) -> None:
        if not self.enabled:
            return
        mean = sum(accuracies) / len(accuracies)
        end = "\r" if self.live else ""
        self.stream.write(
            f"{end}{self.prefix} epoch {epoch + 1}/{self.epochs} done: test metric {mean:.3f} "
            f"(mean over seeds), {seconds:.2f} s\n"
        )
        self.stream.flush()
