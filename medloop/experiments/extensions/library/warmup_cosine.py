"""Learning-rate schedule: linear warm-up over the first 5% of steps, then cosine decay.

Why it can help: a warm-up avoids large early updates with adaptive optimisers at a high
learning rate; the cosine tail anneals to a flatter minimum than a constant rate.
"""

from __future__ import annotations

import math

EXTENSION_POINT = "lr_schedule"
WARMUP = 0.05  # fraction of the steps


def lr_factor(step: int, total_steps: int) -> float:
    warm = max(1, int(WARMUP * total_steps))
    if step < warm:
        return (step + 1) / warm
    progress = (step - warm) / max(1, total_steps - warm)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
