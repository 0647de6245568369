"""`MLPRegressor`: a TrainableComponent that predicts a number from a few features."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from medkit_exp.training import BatchData


class MLPRegressor:
    """A one-hidden-layer network (or a linear model with ``hidden=0``) trained with MSE.

    Items are ``{"x": [float, ...], "y": float}`` dicts. Every constructor argument is a
    config key (``component.hidden=16``) and an MLflow param.
    """

    def __init__(self, n_features: int = 4, hidden: int = 16, dropout: float = 0.0,
                 optimizer: str = "adam", device: Any = "cpu") -> None:
        if n_features < 1 or hidden < 0:
            raise ValueError(f"n_features must be >= 1 and hidden >= 0, got {n_features} and {hidden}")
        if optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be adam or sgd, got {optimizer!r}")
        layers: list[torch.nn.Module] = [torch.nn.Linear(n_features, 1)]
        if hidden:
            layers = [torch.nn.Linear(n_features, hidden), torch.nn.ReLU(), torch.nn.Dropout(dropout),
                      torch.nn.Linear(hidden, 1)]
        self.model = torch.nn.Sequential(*layers)
        self.optimizer_name = optimizer
        self.device = torch.device(device)
        self.model.to(self.device)

    def to(self, device: Any) -> None:
        self.device = torch.device(device)
        self.model.to(self.device)

    def create_optimizer(self, lr: float) -> torch.optim.Optimizer:
        if self.optimizer_name == "sgd":
            return torch.optim.SGD(self.model.parameters(), lr=lr)
        return torch.optim.Adam(self.model.parameters(), lr=lr)

    def preprocess(self, data_item: dict[str, Any]) -> dict[str, torch.Tensor]:
        return {"x": torch.tensor(data_item["x"], dtype=torch.float32),
                "y": torch.tensor(float(data_item["y"]), dtype=torch.float32)}

    def collate(self, batch: list[dict[str, torch.Tensor]]) -> BatchData:
        return BatchData(x=torch.stack([e["x"] for e in batch]), y=torch.stack([e["y"] for e in batch]))

    def forward(self, input_batch: BatchData, return_loss: bool, eval_mode: bool) -> tuple[BatchData, Any]:
        self.model.train(not eval_mode)
        prediction = self.model(input_batch["x"]).squeeze(-1)
        loss = torch.nn.functional.mse_loss(prediction, input_batch["y"]) if return_loss else None
        return BatchData(prediction=prediction), loss

    def save(self, path: str | Path) -> None:
        Path(path).mkdir(parents=True, exist_ok=True)
        torch.save(self.model.state_dict(), Path(path) / "weights.pt")

    def load(self, path: str | Path) -> None:
        state = torch.load(Path(path) / "weights.pt", map_location=self.device, weights_only=True)
        self.model.load_state_dict(state)
