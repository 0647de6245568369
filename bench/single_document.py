"""A corpus whose splits are single CoNLL files without document breaks (benchmark 14).

    python bench/single_document.py [--data-root ../shared/data/ncbi-disease] [--test-chars 706000]

Some public corpora (BC5CDR in its CoNLL form, say) come as one file per split with no
``-DOCSTART-`` line, so ``data=conll`` reads each split as ONE document: NCBI-disease is
written that way here (train: the 593 train abstracts, ~750k characters, dev: the dev
abstracts, test: the test abstracts repeated up to ``--test-chars``, 706k as in BC5CDR's
test file), in a temporary folder. Then, with the app's own component (``hf_ner``, MiniLM,
``trainer.precision=auto``) and functions:

- one training epoch on the single train document (the Trainer's train phase, timed alone);
- scoring the single test document with its error report (``score_test``: prediction,
  exact-span and token scores, ``errors.html``/``errors.tsv``).

Printed: both times and their ratio, test scoring / training epoch (goal: below 1; before the
linear-time rewrite the report alone took hours on such a document).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import DEFAULT_NCBI_ROOT, epoch_timer, load_ncbi, machine_line

from medkit_exp.text.metrics.evaluators import word_spans


def write_single_conll(docs, path: Path, min_chars: int = 0) -> int:
    """Write ``docs`` as one CoNLL document (IOB2 tags, a blank line between sentences, no
    -DOCSTART-), repeating them until the text has ``min_chars`` characters; its characters."""
    from medkit_exp.io.sentences import sentence_spans

    lines, chars, copy = [], 0, 0
    while copy == 0 or chars < min_chars:
        for doc in docs:
            begins = {e.start: e.label for e in doc.anns.entities}
            label_at: list[str | None] = [None] * len(doc.text)  # the entity label of each character
            for entity in doc.anns.entities:
                label_at[entity.start:entity.end] = [entity.label] * (entity.end - entity.start)
            for start, end in sentence_spans(doc.text):
                for w_start, w_end in word_spans(doc.text[start:end]):
                    w_start, w_end = w_start + start, w_end + start
                    if w_start in begins:
                        tag = f"B-{begins[w_start]}"
                    elif label_at[w_start] is not None:
                        tag = f"I-{label_at[w_start]}"
                    else:
                        tag = "O"
                    lines.append(f"{doc.text[w_start:w_end]}\t{tag}")
                    chars += w_end - w_start + 1
                lines.append("")
            if min_chars and chars >= min_chars:
                break
        copy += 1
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return chars


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", default=str(DEFAULT_NCBI_ROOT))
    parser.add_argument("--test-chars", type=int, default=706_000)
    parser.add_argument("--max-docs", type=int, default=None, help="abstracts per split (smoke tests)")
    parser.add_argument("--model", default=None, help="default: the packaged MiniLM")
    parser.add_argument("--precision", default="auto")
    args = parser.parse_args()

    import torch

    from medkit_exp.io import load_corpus
    from medkit_exp.io.conll import load_conll
    from medkit_exp.text.ner.experiment import hf_ner
    from medkit_exp.training import Trainer, TrainerConfig
    from medkit_exp.training.checkpoint import MODEL_DIR

    docs, _, _ = load_ncbi(args.data_root, max_docs=args.max_docs)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        sizes = {split: write_single_conll(docs[split], root / f"{split}.conll",
                                           args.test_chars if split == "test" else 0)
                 for split in ("train", "dev", "test")}
        corpus = load_corpus(root=str(root), name="conll", train="train.conll", dev="dev.conll", test="test.conll",
                             reader=load_conll)
        print(f"{machine_line()}\nsplits read as one document each: "
              + ", ".join(f"{split} {len(corpus[split])} document(s), {len(corpus[split][0].text):,} characters"
                          for split in ("train", "dev", "test")), flush=True)
        component = hf_ner(**({"model": args.model} if args.model else {}), train_data=corpus["train"])
        timer = epoch_timer()
        config = TrainerConfig(output_dir=str(root / "run"), epochs=1, batch_size=16, precision=args.precision,
                               checkpoint_metric="loss", checkpoint_mode="min")
        trainer = Trainer(component, config, corpus["train"], corpus["dev"], callbacks=[timer])
        trainer.train()
        epoch_s = timer.train_seconds[0]
        started = time.perf_counter()
        scores = component.score_test(trainer.best_checkpoint / MODEL_DIR, corpus["test"], report_dir=root / "run")
        scoring_s = time.perf_counter() - started
        rows = (root / "run" / "analysis" / "errors.tsv").read_text(encoding="utf-8").count("\n") - 1
    print(f"precision: {trainer.precision} ({trainer.precision_reason}); threads {torch.get_num_threads()}")
    print(f"training epoch on the {sizes['train']:,}-character train document: {epoch_s:.1f} s")
    print(f"test scoring of the {sizes['test']:,}-character test document with its error report "
          f"({rows:,} error rows, exact-span F1 {scores['f1']:.4f}): {scoring_s:.1f} s")
    print(f"ratio test scoring / training epoch: {scoring_s / epoch_s:.3f} (goal < 1)")


if __name__ == "__main__":
    main()
