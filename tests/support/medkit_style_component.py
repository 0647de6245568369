"""A component written for medkit: ``configure_optimizer`` instead of ``create_optimizer``, no ``to``."""

from __future__ import annotations

from my_regressor import MLPRegressor


class MedkitStyleRegressor(MLPRegressor):
    def __init__(self, hidden: int = 8, device: str = "cpu") -> None:
        super().__init__(n_features=4, hidden=hidden, device=device)

    def configure_optimizer(self, lr):
        return super().create_optimizer(lr)

    create_optimizer = None  # medkit's spelling only
    to = None  # trained where it was built
