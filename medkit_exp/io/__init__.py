"""Read and write corpora: BRAT, JSONL and CoNLL/IOB, plus corpus helpers and a demo corpus.

Readers come in two forms: ``load_*`` returns a `Corpus` (``.documents`` and a `LoadReport`
counting what was kept, dropped and ignored), ``read_*`` returns the documents alone. Every
problem in an input file raises a `CorpusError` naming the file, the line and the fix.

    from medkit_exp.io import load_brat_splits, split_into_sentences
    splits = load_brat_splits("../shared/data/ncbi-disease", label_map=NCBI_LABEL_MAP)
    train = split_into_sentences(splits["train"].documents)

Importing this package imports no heavy dependency.
"""

from medkit_exp.io.base import Corpus, CorpusError, LoadReport
from medkit_exp.io.brat import (
    NORMALIZATION,
    load_brat,
    load_brat_splits,
    read_brat,
    read_brat_splits,
    write_brat,
)
from medkit_exp.io.conll import load_conll, read_conll
from medkit_exp.io.corpus import (
    apply_label_map,
    corpus_digest,
    corpus_labels,
    corpus_summary,
    filter_labels,
    format_summary,
    resolve_overlaps,
)
from medkit_exp.io.demo import DEMO_LABELS, load_demo_corpus
from medkit_exp.io.jsonl import load_jsonl, read_jsonl, write_jsonl
from medkit_exp.io.sentences import (
    entity_to_parent,
    merge_sentence_entities,
    sentence_spans,
    split_into_sentences,
)
from medkit_exp.io.splits import CorpusSplits, demo_corpus, load_corpus
from medkit_exp.io.texts import load_texts, read_texts

# The usual NCBI-disease NER benchmark collapses its four labels into one.
NCBI_LABEL_MAP = {
    "SpecificDisease": "Disease",
    "Modifier": "Disease",
    "DiseaseClass": "Disease",
    "CompositeMention": "Disease",
}

__all__ = [
    "Corpus",
    "CorpusError",
    "CorpusSplits",
    "DEMO_LABELS",
    "LoadReport",
    "NCBI_LABEL_MAP",
    "NORMALIZATION",
    "apply_label_map",
    "corpus_digest",
    "corpus_labels",
    "corpus_summary",
    "demo_corpus",
    "entity_to_parent",
    "filter_labels",
    "format_summary",
    "load_brat",
    "load_brat_splits",
    "load_conll",
    "load_corpus",
    "load_texts",
    "read_texts",
    "load_demo_corpus",
    "load_jsonl",
    "merge_sentence_entities",
    "read_brat",
    "read_brat_splits",
    "read_conll",
    "read_jsonl",
    "resolve_overlaps",
    "sentence_spans",
    "split_into_sentences",
    "write_brat",
    "write_jsonl",
]
