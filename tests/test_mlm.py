"""``component=hf_mlm``: whole-word masking at BERT's rates, packing, perplexity, training, resume, and
hf_ner started from the pretrained folder."""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

import pytest
import torch
from test_cli import client_for, run_cli

from medkit_exp.io.demo import load_demo_corpus
from medkit_exp.text.hf_model import load_fast_tokenizer
from medkit_exp.text.mlm.masking import IGNORE_INDEX, MaskingSettings, mask_block
from medkit_exp.text.mlm.packing import NO_WORD, pack_texts, text_pieces


@pytest.fixture(scope="module")
def tokenizer(tiny_bert_dir):
    return load_fast_tokenizer(tiny_bert_dir)


@pytest.fixture(scope="module")
def demo_blocks(tokenizer):
    texts = [doc.text for split in load_demo_corpus().values() for doc in split]
    pieces = [text_pieces(tokenizer, text) for text in texts]
    blocks, first = pack_texts(pieces, 64, tokenizer.cls_token_id, tokenizer.sep_token_id)
    return pieces, blocks, first


def test_packing_keeps_every_token_once_in_order_in_blocks_of_at_most_max_length(tokenizer, demo_blocks):
    pieces, blocks, first = demo_blocks
    assert all(len(b["input_ids"]) <= 64 and b["length"] == len(b["input_ids"]) for b in blocks)
    assert all(b["input_ids"][0] == tokenizer.cls_token_id and b["input_ids"][-1] == tokenizer.sep_token_id
               for b in blocks)
    packed = [t for b in blocks for t, w in zip(b["input_ids"], b["word_index"], strict=True) if w != NO_WORD]
    assert packed == [t for p in pieces for t in p["input_ids"]]
    # No padding: every block but the last is within one word of full.
    longest_word = max(len(list(g)) for p in pieces for _, g in __import__("itertools").groupby(p["word_ids"]))
    assert all(len(b["input_ids"]) > 64 - longest_word - 1 for b in blocks[:-1])
    assert first == sorted(first) and first[0] == 0 and len(blocks) < len(pieces)  # texts share blocks
    # A word's pieces are never split between blocks (no word is longer than a block here).
    for block in blocks:
        starts = [i for i, w in enumerate(block["word_index"]) if w != NO_WORD]
        assert not tokenizer.convert_ids_to_tokens(block["input_ids"][starts[0]]).startswith("##")


def test_masking_rates_on_10000_tokens_are_within_one_point_of_15_80_10_10(tokenizer, demo_blocks):
    _, blocks, _ = demo_blocks
    settings = MaskingSettings()
    replacement = torch.tensor([i for i in range(len(tokenizer)) if i not in set(tokenizer.all_special_ids)])
    maskable = chosen = as_mask = as_random = unchanged = 0
    generator = torch.Generator().manual_seed(0)
    while maskable < 10_000:
        for block in blocks:
            ids = torch.tensor(block["input_ids"])
            masked, labels = mask_block(ids, block["word_index"], settings, tokenizer.mask_token_id, replacement,
                                        generator)
            picked = labels != IGNORE_INDEX
            maskable += sum(1 for w in block["word_index"] if w != NO_WORD)
            chosen += int(picked.sum())
            as_mask += int((masked[picked] == tokenizer.mask_token_id).sum())
            unchanged += int((masked[picked] == ids[picked]).sum())
            as_random += int(((masked[picked] != tokenizer.mask_token_id) & (masked[picked] != ids[picked])).sum())
            assert torch.equal(masked[~picked], ids[~picked])  # only chosen tokens change
            assert not picked[[i for i, w in enumerate(block["word_index"]) if w == NO_WORD]].any()
    assert maskable >= 10_000
    assert abs(chosen / maskable - 0.15) < 0.01
    assert abs(as_mask / chosen - 0.80) < 0.01
    assert abs(as_random / chosen - 0.10) < 0.01
    assert abs(unchanged / chosen - 0.10) < 0.01


def test_whole_words_are_masked_whole(tokenizer, demo_blocks):
    _, blocks, _ = demo_blocks
    replacement = torch.arange(1000, 2000)
    generator = torch.Generator().manual_seed(1)
    multi_piece_words_chosen = 0
    for block in blocks:
        ids = torch.tensor(block["input_ids"])
        _, labels = mask_block(ids, block["word_index"], MaskingSettings(), tokenizer.mask_token_id, replacement,
                               generator)
        words: dict[int, list[bool]] = {}
        for position, word in enumerate(block["word_index"]):
            if word != NO_WORD:
                words.setdefault(word, []).append(bool(labels[position] != IGNORE_INDEX))
        assert all(all(flags) or not any(flags) for flags in words.values())
        multi_piece_words_chosen += sum(1 for flags in words.values() if len(flags) > 1 and all(flags))
    assert multi_piece_words_chosen > 10  # the property is tested on words of several pieces, not only single ones
    # Token-level masking (whole_word_masking=false) does split them.
    split = 0
    for block in blocks:
        _, labels = mask_block(torch.tensor(block["input_ids"]), block["word_index"],
                               MaskingSettings(whole_words=False), tokenizer.mask_token_id, replacement, generator)
        words = {}
        for position, word in enumerate(block["word_index"]):
            if word != NO_WORD:
                words.setdefault(word, []).append(bool(labels[position] != IGNORE_INDEX))
        split += sum(1 for flags in words.values() if any(flags) and not all(flags))
    assert split > 0


def test_evaluation_masks_are_the_same_every_time_and_training_masks_change(tiny_bert_dir):
    from medkit_exp.text.mlm.trainable import HFMaskedLMTrainable

    component = HFMaskedLMTrainable(tiny_bert_dir, max_length=32)
    examples = [component.preprocess(doc) for doc in load_demo_corpus()["dev"][:20]]
    blocks, _ = component.pack_examples(examples)
    batch = component.collate(blocks)
    first, _ = component.forward(batch, return_loss=True, eval_mode=True)
    second, _ = component.forward(batch, return_loss=True, eval_mode=True)
    assert torch.equal(first["loss_sum"], second["loss_sum"]) and first["masked_tokens"] == second["masked_tokens"]
    torch.manual_seed(0)
    _, loss_a = component.forward(batch, return_loss=True, eval_mode=False)
    _, loss_b = component.forward(batch, return_loss=True, eval_mode=False)
    assert loss_a is not None and loss_b is not None and float(loss_a.detach()) != float(loss_b.detach())


def test_bad_masking_settings_are_refused_in_one_line():
    with pytest.raises(ValueError, match="mlm_probability must be in"):
        MaskingSettings(rate=0)
    with pytest.raises(ValueError, match="sum to at most 1"):
        MaskingSettings(mask_share=0.9, random_share=0.2)


def mlm_args(model_dir: Path, *extra: str) -> list[str]:
    return ["+experiment=mlm", "data=demo", f"component.model={model_dir}", "component.max_length=64",
            "trainer.lr=2e-3", "trainer.batch_size=16", "threads=1", "callbacks.progress_bars=false", *extra]


def test_hf_mlm_lowers_dev_loss_on_the_demo_text_and_hf_ner_starts_from_its_model(workdir, tiny_bert_dir):
    result = run_cli(mlm_args(tiny_bert_dir, "trainer.epochs=3", "tracking.register_as=tiny-mlm", "hydra.run.dir=mlm"),
                     workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(r"dev \(before\) : perplexity=[\d.]+", result.stdout)
    run_id = re.search(r"MLflow run\s+: (\w+)", result.stdout).group(1)
    run = client_for(workdir).get_run(run_id)
    metrics = run.data.metrics
    assert metrics["best_eval_perplexity"] < metrics["initial_eval_perplexity"]
    assert abs(metrics["best_eval_perplexity"] - 2.718281828 ** metrics["best_eval_mlm_loss"]) < 1e-3 * metrics[
        "best_eval_perplexity"]
    history = json.loads((workdir / "mlm" / "checkpoints" / "history.json").read_text())
    dev_losses = [h["eval"]["mlm_loss"] for h in history]
    assert dev_losses == sorted(dev_losses, reverse=True)  # falls every epoch
    model_dir = workdir / "mlm" / "checkpoints" / "checkpoint_003" / "model"
    assert (model_dir / "config.json").is_file() and (model_dir / "tokenizer.json").is_file()
    assert json.loads((model_dir / "config.json").read_text())["architectures"] == ["BertForMaskedLM"]

    # The chain: NER fine-tuned from the registered masked language model, its lineage recorded.
    ner = run_cli(["component.model=models:/tiny-mlm/1", "data.max_docs=40", "trainer.epochs=1", "threads=1",
                   "callbacks.progress_bars=false", "hydra.run.dir=ner"], workdir)
    assert ner.returncode == 0, ner.stderr[-3000:]
    assert "test         : precision=" in ner.stdout
    ner_run = client_for(workdir).get_run(re.search(r"MLflow run\s+: (\w+)", ner.stdout).group(1))
    assert ner_run.info.status == "FINISHED"
    assert ner_run.data.tags["medkit_exp.base_run"] == run_id
    assert ner_run.data.tags["medkit_exp.base_model"] == "models:/tiny-mlm/1"
    (logged,) = client_for(workdir).search_logged_models(
        experiment_ids=[run.info.experiment_id], filter_string=f"source_run_id = '{run_id}'")
    assert [m.model_id for m in ner_run.inputs.model_inputs] == [logged.model_id]


def test_metrics_and_component_that_do_not_fit_are_refused_in_one_line(workdir, tiny_bert_dir):
    wrong = run_cli(mlm_args(tiny_bert_dir, "metrics=seqeval", "tracking=none"), workdir)
    assert wrong.returncode == 2 and "metrics=perplexity" in wrong.stderr
    wrong = run_cli([f"component.model={tiny_bert_dir}", "metrics=perplexity", "tracking=none"], workdir)
    assert wrong.returncode == 2 and "component=hf_mlm" in wrong.stderr


def test_data_text_reads_folders_of_txt_files_and_files_of_lines(tmp_path):
    from medkit_exp.errors import UserError
    from medkit_exp.io import load_texts

    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "b.txt").write_text("Second note.", encoding="utf-8")
    (tmp_path / "train" / "a.txt").write_text("First note about asthma.", encoding="utf-8")
    (tmp_path / "dev.txt").write_text("One line.\n\nAnother line.\n", encoding="utf-8")
    corpus = load_texts(str(tmp_path), train="train", dev="dev.txt")
    assert [d.text for d in corpus["train"]] == ["First note about asthma.", "Second note."]
    assert [d.id for d in corpus["train"]] == ["a", "b"]
    assert [(d.id, d.text) for d in corpus["dev"]] == [("dev-000001", "One line."), ("dev-000003", "Another line.")]
    assert corpus["test"] == []
    with pytest.raises(UserError, match="does not exist; check data.root and data.dev"):
        load_texts(str(tmp_path), train="train", dev="missing")


class InterruptAt:
    """Sends this process SIGINT after training step ``step`` of epoch ``epoch``: the Trainer ends
    the step, writes a mid-epoch checkpoint and raises KeyboardInterrupt."""

    def __init__(self, epoch: int, step: int) -> None:
        self.epoch, self.step, self.current = epoch, step, 0

    def on_epoch_begin(self, epoch):
        self.current = epoch

    def on_step_end(self, step_idx, nb_batches, phase, batch_size=0, **_):
        if phase == "train" and self.current == self.epoch and step_idx + 1 == self.step:
            os.kill(os.getpid(), signal.SIGINT)


def test_resume_of_an_hf_mlm_run_equals_an_uninterrupted_one(tmp_path, tiny_bert_dir):
    from medkit_exp.text.mlm import PerplexityMetricsComputer
    from medkit_exp.text.mlm.trainable import HFMaskedLMTrainable
    from medkit_exp.training import Trainer, TrainerCallback, TrainerConfig

    class Interrupt(InterruptAt, TrainerCallback):
        pass

    corpus = load_demo_corpus()
    train, dev = corpus["train"][:120], corpus["dev"][:30]

    def trainer(folder: str, callbacks, **settings) -> tuple[Trainer, HFMaskedLMTrainable]:
        torch.manual_seed(0)
        component = HFMaskedLMTrainable(tiny_bert_dir, max_length=32)
        config = TrainerConfig(output_dir=str(tmp_path / folder), epochs=3, batch_size=8, lr=1e-3, seed=0,
                               precision="fp32", checkpoint_period=1, **settings)
        return Trainer(component, config, train, dev, metrics_computer=PerplexityMetricsComputer(),
                       callbacks=callbacks), component

    straight, straight_component = trainer("straight", [])
    straight_history = straight.train()
    interrupted, _ = trainer("part", [Interrupt(epoch=2, step=3)])
    with pytest.raises(KeyboardInterrupt):
        interrupted.train()
    resumed, resumed_component = trainer("part", [], resume_from="last")
    resumed_history = resumed.train()
    for a, b in zip(straight_component.model.state_dict().values(), resumed_component.model.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)
    assert [h["eval"]["perplexity"] for h in resumed_history] == [h["eval"]["perplexity"] for h in straight_history]


def test_hf_mlm_trains_with_torchrun_and_measures_the_same_dev_perplexity_as_one_process(workdir, tiny_bert_dir):
    import subprocess
    import sys

    from test_cli import cli_env

    args = mlm_args(tiny_bert_dir, "trainer.epochs=1", "trainer.precision=fp32", "trainer.batch_size=8")
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "-m", "medkit_exp",
                          *args, "hydra.run.dir=ddp"], cwd=workdir, env=cli_env(), capture_output=True, text=True,
                         timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-4000:]
    single = run_cli([*args, "hydra.run.dir=single"], workdir)
    assert single.returncode == 0, single.stderr[-3000:]
    client = client_for(workdir)
    runs = client.search_runs([client.get_experiment_by_name("mlm").experiment_id])
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
    before = [r.data.metrics["initial_eval_perplexity"] for r in runs]
    assert abs(before[0] - before[1]) < 1e-6 * before[0]  # fixed evaluation masks: the same tokens scored
    assert all("best_eval_perplexity" in r.data.metrics for r in runs)
