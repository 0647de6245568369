"""`synthetic_splits`: a noisy non-linear function of a few features, in train/dev/test splits."""

from __future__ import annotations

import random


def synthetic_splits(n_train: int = 256, n_dev: int = 64, n_test: int = 64, n_features: int = 4,
                     noise: float = 0.1, seed: int = 0) -> dict[str, list[dict]]:
    """``{"train": [...], "dev": [...], "test": [...]}`` of ``{"x": [...], "y": float}`` items.

    ``y = 2 x0 - x1 + x2 * x3 + noise``: a linear model gets most of it, a hidden layer the rest.
    """
    if n_features < 4:
        raise ValueError(f"n_features must be >= 4 (y uses x0..x3), got {n_features}")
    rng = random.Random(seed)

    def item() -> dict:
        x = [rng.uniform(-1, 1) for _ in range(n_features)]
        return {"x": x, "y": 2 * x[0] - x[1] + x[2] * x[3] + rng.gauss(0, noise)}

    return {"train": [item() for _ in range(n_train)], "dev": [item() for _ in range(n_dev)],
            "test": [item() for _ in range(n_test)]}
