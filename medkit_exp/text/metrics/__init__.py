"""NER metrics: seqeval scores of tag sequences (training) and evaluators of entities (inference)."""

from medkit_exp.text.metrics.evaluators import ExactSpanEvaluator, SeqEvalEvaluator, word_spans
from medkit_exp.text.metrics.seqeval_metrics import SeqEvalMetricsComputer, seqeval_scores

__all__ = ["ExactSpanEvaluator", "SeqEvalEvaluator", "SeqEvalMetricsComputer", "seqeval_scores", "word_spans"]
