"""What the Trainer needs from a component and from a metrics computer.

The contract is medkit's: a `TrainableComponent` turns raw items into tensors
(`preprocess` once per item, `collate` per batch), runs its model (`forward`) and saves
itself. The Trainer only ever calls these methods, so any object that has them trains.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, _ProtocolMeta, runtime_checkable

import torch

from medkit_exp.training.batch import BatchData
from medkit_exp.training.errors import TrainingSetupError


class _ComponentCheck(_ProtocolMeta):
    """``isinstance(x, TrainableComponent)`` accepts medkit's ``configure_optimizer`` spelling,
    as the Trainer does (a plain runtime Protocol would ask for ``create_optimizer`` alone)."""

    def __instancecheck__(cls, instance: Any) -> bool:
        if cls.__name__ == "TrainableComponent" and cls.__module__ == __name__:
            return hasattr(instance, "device") and not missing_protocol_methods(instance)
        return super().__instancecheck__(instance)


@runtime_checkable
class TrainableComponent(Protocol, metaclass=_ComponentCheck):
    """A component the `Trainer` can fine-tune.

    - ``device``: where the model lives; the Trainer moves batches there.
    - ``load(path)``: load model weights saved by ``save`` (used to resume a run).
    - ``create_optimizer(lr)``: the optimizer over the model's parameters (medkit's name
      ``configure_optimizer`` is accepted too).
    - ``preprocess(item)``: turn one raw item (e.g. a `TextDocument`) into model inputs;
      called once per item for the whole run. It may return a list of inputs when one item
      yields several examples (a long document split into windows).
    - ``collate(items)``: pad preprocessed inputs into a `BatchData`.
    - ``forward(batch, return_loss, eval_mode)``: returns ``(model_output, loss)``; the
      loss is ``None`` unless ``return_loss``. ``eval_mode`` switches dropout off.
    - ``save(path)``: write everything needed to reload the model into ``path``.

    Optional: ``example_length(example)`` (to group batches by length) and
    ``example_weight(example)``: how many terms of the loss mean an example brings (e.g. its
    labelled tokens when the loss averages over tokens; 1 when it averages over rows, the
    default). The Trainer weights micro-batches by it so that gradient accumulation and
    data-parallel training give exactly the update of the whole batch. An attribute
    ``pad_to_multiple_of``, when the component has one, is set by the Trainer
    (``trainer.pad_to_multiple_of``; by default 16 in bf16 on CPU, else None) for ``collate``
    to round batch lengths up to; so is ``pad_lengths`` (a tuple of lengths, or None), when the
    component has one: by default in bf16 on CPU, the lengths that pad the training batches
    least with as few shapes (``collate`` pads to the smallest that holds the batch, else to a
    multiple of ``pad_to_multiple_of``).
    ``pack_examples(examples) -> (packed, first)``, when the component has it, regroups each
    split's preprocessed examples (a language model packs texts into fixed-length blocks; see
    `preprocess_owned`).
    ``prepare_for_training(examples)``, when the component has it, is called with the
    preprocessed training examples before ``create_optimizer`` (the HF components train only
    the embedding rows of the tokens those examples use).
    """

    device: torch.device

    def load(self, path: str | Path) -> None: ...

    def create_optimizer(self, lr: float) -> torch.optim.Optimizer: ...

    def preprocess(self, data_item: Any) -> Any: ...

    def collate(self, batch: list[Any]) -> BatchData: ...

    def forward(
        self, input_batch: BatchData, return_loss: bool, eval_mode: bool
    ) -> tuple[BatchData, torch.Tensor | None]: ...

    def save(self, path: str | Path) -> None: ...


@runtime_checkable
class MetricsComputer(Protocol):
    """Turns model outputs into metrics: per batch (``prepare_batch``), then per epoch.

    ``prepare_batch`` returns a dict of lists; the Trainer concatenates those lists over
    all batches of a phase and hands them to ``compute``, which returns ``{name: float}``.

    Optional: ``item_values(all_data) -> list[dict]``, from the same data ``compute`` takes, one
    dict per item scored: ``{"values": {name: float, ...}}`` (numbers whose mean over the items
    is a score, e.g. each item's absolute error for ``mae``) or ``{"gold": class, "predicted":
    class}``. Each may carry its ``document_id``; without it, the list must hold one dict per
    example, in the order of the data (the Trainer evaluates examples in order), and an example's
    id is that of the item it was preprocessed from (the item's ``document_id`` or ``id``, else
    its position in the split). For a component without its own ``score_test``
    (`ExperimentHooks`), the app stores these as the run's per-document predictions.
    """

    def prepare_batch(self, model_output: BatchData, input_batch: BatchData) -> dict[str, list[Any]]: ...

    def compute(self, all_data: dict[str, list[Any]]) -> dict[str, float]: ...


def item_values_of(metrics_computer: Any) -> Callable[[dict[str, list[Any]]], Any] | None:
    """The metrics computer's optional ``item_values`` (see `MetricsComputer`), or None."""
    method = getattr(metrics_computer, "item_values", None)
    return method if callable(method) else None


def example_weight(component: TrainableComponent, example: Any) -> float:
    """Terms of the loss mean an example brings: the component's own measure, else 1 (a row)."""
    measure = getattr(component, "example_weight", None)
    return float(measure(example)) if callable(measure) else 1.0


def example_length(component: TrainableComponent, example: Any) -> int:
    """Length used to group batches: the component's own measure, else ``len(input_ids)``."""
    measure = getattr(component, "example_length", None)
    if callable(measure):
        return int(measure(example))
    if isinstance(example, dict):
        if "length" in example:
            return int(example["length"])
        if "input_ids" in example:
            return len(example["input_ids"])
    return 1


def preprocess_all(component: TrainableComponent, items: list[Any]) -> list[Any]:
    """Preprocess every item once for the whole run; a list result adds several examples."""
    return preprocess_owned(component, items)[0]


def preprocess_owned(component: TrainableComponent, items: list[Any]) -> tuple[list[Any], list[int]]:
    """`preprocess_all`, and for each example the position in ``items`` of the item it came from.

    A component with ``pack_examples(examples) -> (packed, first)`` regroups a split's
    preprocessed examples (e.g. texts packed into fixed-length blocks for a language model);
    ``first[i]`` is the index, among the examples it was given, of the first one block ``i`` holds,
    and the block's owner is that example's item.
    """
    examples: list[Any] = []
    owners: list[int] = []
    for position, item in enumerate(items):
        result = component.preprocess(item)
        produced = result if isinstance(result, list) else [result]
        examples.extend(produced)
        owners.extend([position] * len(produced))
    pack = getattr(component, "pack_examples", None)
    if callable(pack) and examples:
        examples, first = pack(examples)
        owners = [owners[index] for index in first]
    return examples, owners


def place_component(component: TrainableComponent, device: torch.device) -> None:
    """Move the component to ``device`` with its ``to(device)``; without one, it must be there already."""
    move = getattr(component, "to", None)
    if callable(move):
        move(device)
    elif torch.device(component.device) != device:
        raise TrainingSetupError(
            f"the component is on {component.device} but trainer.device resolves to {device}; "
            "create the component on that device or add a to(device) method"
        )


def prepare_for_training(component: TrainableComponent, examples: list[Any]) -> None:
    """Call the component's optional ``prepare_for_training`` with the preprocessed training examples."""
    prepare = getattr(component, "prepare_for_training", None)
    if callable(prepare):
        prepare(examples)


def create_optimizer(component: TrainableComponent, lr: float) -> torch.optim.Optimizer:
    """Call the component's ``create_optimizer``, or medkit's ``configure_optimizer``."""
    for name in ("create_optimizer", "configure_optimizer"):
        method = getattr(component, name, None)
        if callable(method):
            return method(lr)
    raise TypeError(
        f"{type(component).__name__} has no create_optimizer(lr) (nor configure_optimizer(lr)); "
        "add one that returns a torch optimizer over the model's parameters"
    )


class ExperimentHooks(Protocol):
    """What a component may add for the experiment app (``python -m medkit_exp``); all optional.

    The app looks each one up on the built component and falls back to its default:

    - ``score_test(model_dir, items) -> {name: float}``: scores of the model saved in
      ``model_dir`` (the best checkpoint's ``model/``, written by ``save``) on the test
      split's items, logged as ``test_<name>``. Default: the best checkpoint is loaded into
      the component with ``load`` and evaluated like the dev split (loss and the metrics
      computer's metrics). Two optional keywords, passed only when the method takes them:
      ``report_dir`` (a folder for the component's error analysis) and ``predictions_path``: write
      there, as JSON Lines, what the scores are recomputed from, one record per document (NER:
      ``{"document_id", "split", "gold": [[label, start, end], ...], "predicted": [...]}``) or per
      item (classification: ``"gold"`` and ``"predicted"`` are classes), the split being the
      file's stem (`medkit_exp.text.predictions`). The app asks for ``predictions/test.jsonl`` and,
      scoring the dev split once more with the best checkpoint, ``predictions/dev.jsonl``; from
      the test records it computes the test scores' bootstrap intervals. A component without the
      keyword: no predictions and no intervals (the run says so in one log line), unless it has
      no ``score_test`` at all and its metrics computer has ``item_values`` (`MetricsComputer`):
      the app then evaluates the best checkpoint like the dev split, on the test split (and the
      dev split), and stores the per-item values it returns as the records
      ``{"document_id", "split", "values": {name: number}}``, scored as their means.
    - ``log_mlflow_model(model_dir, *, step, register_as) -> info``: log the saved model as an
      MLflow model of the active run (``tracking.log_model``); ``info`` has ``model_uri`` and,
      when registered, ``registered_uri``. Default: no model is logged, and
      ``tracking.register_as`` is refused before training.
    - ``summary_metrics``: the metric names the run summary prints (default: every scalar
      metric of the best epoch but per-label ones, at most eight); ``test_note``: a few words
      printed after the test scores (e.g. "exact character spans").
    """

    def score_test(self, model_dir: Path, items: Any, *, report_dir: Path | None = None,
                   predictions_path: Path | None = None) -> dict[str, float]: ...

    def log_mlflow_model(self, model_dir: Path, *, step: int = 0, register_as: str | None = None) -> Any: ...


def missing_protocol_methods(component: Any) -> list[str]:
    """The `TrainableComponent` methods that ``component`` lacks (medkit's ``configure_optimizer`` counts)."""
    required = ("load", "preprocess", "collate", "forward", "save")
    missing = [name for name in required if not callable(getattr(component, name, None))]
    if not any(callable(getattr(component, n, None)) for n in ("create_optimizer", "configure_optimizer")):
        missing.append("create_optimizer (or configure_optimizer)")
    return missing
