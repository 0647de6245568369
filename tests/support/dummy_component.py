"""A tiny trainable component without transformers, to drive the Trainer in tests."""

from __future__ import annotations

from pathlib import Path

import torch

from medkit_exp.training import BatchData


class DummyClassifier:
    """Logistic regression with dropout over 4 features; items are ``(features, label)``."""

    def __init__(self, dropout: float = 0.1, seed: int = 0, fail_at_forward: int | None = None,
                 optimizer: str = "adamw") -> None:
        torch.manual_seed(seed)
        self.model = torch.nn.Sequential(torch.nn.Dropout(dropout), torch.nn.Linear(4, 2))
        self.device = torch.device("cpu")
        self.fail_at_forward = fail_at_forward
        self.optimizer_name = optimizer
        self.forward_calls = 0
        self.preprocess_calls = 0

    def to(self, device):
        self.device = torch.device(device)
        self.model.to(self.device)

    def load(self, path):
        self.model.load_state_dict(torch.load(Path(path) / "weights.pt"))

    def save(self, path):
        Path(path).mkdir(parents=True, exist_ok=True)
        torch.save(self.model.state_dict(), Path(path) / "weights.pt")

    def create_optimizer(self, lr):
        if self.optimizer_name == "sgd":
            return torch.optim.SGD(self.model.parameters(), lr=lr)
        return torch.optim.AdamW(self.model.parameters(), lr=lr, weight_decay=0.0)

    def preprocess(self, item):
        self.preprocess_calls += 1
        features, label = item
        return {"x": torch.tensor(features, dtype=torch.float32), "y": torch.tensor(label)}

    def collate(self, items):
        return BatchData(x=torch.stack([i["x"] for i in items]), y=torch.stack([i["y"] for i in items]))

    def forward(self, batch, return_loss, eval_mode):
        self.forward_calls += 1
        self.model.train(not eval_mode)
        logits = self.model(batch["x"])
        loss = torch.nn.functional.cross_entropy(logits, batch["y"]) if return_loss else None
        if self.fail_at_forward is not None and self.forward_calls == self.fail_at_forward:
            loss = loss * float("nan")
        return BatchData(logits=logits), loss


class AccuracyMetrics:
    """MetricsComputer for the dummy classifier."""

    def prepare_batch(self, model_output, input_batch):
        predicted = model_output["logits"].argmax(-1).tolist()
        return {"pred": predicted, "gold": input_batch["y"].tolist()}

    def compute(self, all_data):
        pairs = list(zip(all_data["pred"], all_data["gold"], strict=True))
        return {"accuracy": sum(p == g for p, g in pairs) / len(pairs)}


def make_data(n: int, seed: int = 0):
    """Linearly separable-ish points: label 1 when the feature sum is positive."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=generator)
    y = (x.sum(-1) > 0).long()
    return [(row.tolist(), int(label)) for row, label in zip(x, y, strict=True)]
