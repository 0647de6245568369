"""Each benchmark script runs end to end on a tiny input (figures are measured outside CI).

The scripts run in forks of one server that imported torch, transformers, MLflow and the app
once (tests/support/bench_forkserver.py), and with ``--fork`` they fork their sides and app runs too:
each script still runs end to end, minus 3-6 s of imports per process.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
import select
import subprocess
import sys
import time

import pytest
from conftest import REPO_ROOT, SHARED_DATA
from test_cli import cli_env


def last_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def run_bench(tmp_path_factory):
    """``run_bench(SCRIPT, *ARGS, timeout=300)``: ``python bench/SCRIPT ARGS`` run by the fork server."""
    log = tmp_path_factory.mktemp("bench-forkserver") / "stderr.txt"
    with log.open("w") as stderr:
        script = REPO_ROOT / "tests" / "support" / "bench_forkserver.py"
        server = subprocess.Popen([sys.executable, str(script)], cwd=REPO_ROOT, env=cli_env(), stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=stderr, text=True)
    assert server.stdout.readline(), f"the fork server did not start: {log.read_text()[-3000:]}"

    def run(script: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
        command = [str(REPO_ROOT / "bench" / script), *args]
        server.stdin.write(json.dumps({"args": command, "cwd": str(REPO_ROOT), "env": cli_env(),
                                       "timeout": timeout}) + "\n")
        server.stdin.flush()
        if not select.select([server.stdout], [], [], timeout + 60)[0]:  # the server enforces timeout itself
            server.kill()
            raise AssertionError(f"the fork server hangs: {log.read_text()[-3000:]}")
        line = server.stdout.readline()
        assert line, f"the fork server died: {log.read_text()[-3000:]}"
        reply = json.loads(line)
        if reply.get("timeout"):
            raise subprocess.TimeoutExpired([sys.executable, *command], timeout)
        return subprocess.CompletedProcess([sys.executable, *command], reply["returncode"], reply["stdout"],
                                           reply["stderr"])

    yield run
    server.stdin.close()
    server.wait(timeout=60)


def figures(line: str, pattern: str) -> list[float]:
    """The numbers of a printed line that must read exactly ``pattern`` (its groups), each finite.

    The patterns spell numbers as digits (``\\d+\\.\\d{3}``), so ``nan`` or ``inf`` never match.
    """
    match = re.fullmatch(pattern, line)
    assert match, f"{line!r} does not read {pattern!r}"
    values = [float(group.replace(",", "")) for group in match.groups()]
    assert all(math.isfinite(value) for value in values), line
    return values


@pytest.mark.parametrize("line", ["ratio tracked/untracked: nan", "ratio tracked/untracked: inf",
                                  "ratio tracked/untracked: 1.2", "ratio tracked/untracked: 1.234 s"])
def test_a_figure_not_in_its_printed_form_fails(line):
    with pytest.raises(AssertionError, match="does not read"):
        figures(line, r"ratio tracked/untracked: (\d+\.\d{3})")
    assert figures("ratio tracked/untracked: 1.234", r"ratio tracked/untracked: (\d+\.\d{3})") == [1.234]


def test_tracking_overhead_prints_its_ratio(run_bench, tiny_bert_dir):
    result = run_bench("tracking_overhead.py", "--pairs", "1", "--epochs", "1", "--model", str(tiny_bert_dir))
    (ratio,) = figures(last_line(result), r"ratio tracked/untracked: (\d+\.\d{3})")
    assert ratio > 0


@pytest.mark.skipif(not (SHARED_DATA / "ncbi-disease").is_dir(), reason="NCBI-disease data not found")
def test_ncbi_vs_hf_trainer_prints_the_f1_difference(run_bench, tiny_bert_dir):
    sides = [] if importlib.util.find_spec("accelerate") else ["--only", "ours"]  # accelerate: bench extra only
    result = run_bench("ncbi_vs_hf_trainer.py", "--model", str(tiny_bert_dir), "--epochs", "1", "--max-docs", "4",
                       "--seeds", "0", "--fork", *sides)
    lines = result.stdout.strip().splitlines()
    means = {}
    for side in ("ours", "hf") if not sides else ("ours",):
        (line,) = [line for line in lines if line.startswith(f"mean test F1 {side}: ")]
        (means[side],) = figures(line, rf"mean test F1 {side}: ([01]\.\d{{4}})")
    if not sides:
        (difference,) = figures(last_line(result),
                                r"test F1 difference \(ours - transformers Trainer\): ([+-]\d\.\d{4})")
        assert difference == pytest.approx(means["ours"] - means["hf"], abs=1.5e-4)  # of the printed, rounded means


NO_INDEX = ("(from versions: none)", "NewConnectionError", "Max retries exceeded",
            "Temporary failure in name resolution", "Network is unreachable")  # pip's words when offline


@pytest.mark.skipif(not (SHARED_DATA / "ncbi-disease").is_dir(), reason="NCBI-disease data not found")
def test_ncbi_vs_medkit_lib_prints_the_epoch_ratio(run_bench, tiny_bert_dir):
    # The first run builds medkit-lib's venv in the user cache (about 70 s, from the package
    # index); later runs reuse it. Skipped only when no package index can be reached.
    # Our side without --fork: this smoke test keeps run_side's fresh interpreter (the benchmarks' way) checked.
    result = run_bench("ncbi_vs_medkit_lib.py", "--model", str(tiny_bert_dir), "--max-docs", "3", timeout=600)
    if result.returncode == 3 and any(sign in result.stderr for sign in NO_INDEX):  # VENV_BUILD_FAILED
        pytest.skip("medkit-lib's venv cannot be built: no package index reachable")
    (ratio,) = figures(last_line(result), r"train-epoch ratio ours / medkit-lib: (\d+\.\d{3}) \(goal <= 0\.55\)")
    assert ratio > 0


needs_ncbi = pytest.mark.skipif(not (SHARED_DATA / "ncbi-disease").is_dir(), reason="NCBI-disease data not found")


RATIO = r"(\d+\.\d{3}) \(goal <= [0-9.]+\)"  # a finite number, not nan


@needs_ncbi
def test_ncbi_epoch_vs_hf_trainer_prints_every_ratio(run_bench, tiny_bert_dir):
    result = run_bench("ncbi_epoch_vs_hf_trainer.py", "--model", str(tiny_bert_dir), "--max-docs", "3", "--fork",
                       "--sides", "ours", "ours-bf16", "hf-random", "hf-grouped", "hf-grouped-bf16")
    lines = result.stdout.strip().splitlines()
    assert last_line(result).startswith("train-epoch ratio ours-bf16 / hf-grouped-bf16: ")
    ratios = [line for line in lines if line.startswith("train-epoch ratio ")]
    assert [line.split(":")[0] for line in ratios] == [
        "train-epoch ratio ours / hf-random", "train-epoch ratio ours / hf-grouped",
        "train-epoch ratio ours-bf16 / hf-random", "train-epoch ratio ours-bf16 / hf-grouped-bf16"]
    assert all(figures(line.split(": ")[1], RATIO)[0] > 0 for line in ratios), ratios
    for side in ("ours", "ours-bf16", "hf-random", "hf-grouped", "hf-grouped-bf16"):  # each trained and was scored
        (line,) = [line for line in lines if line.startswith(side + " ")]
        assert "peak RSS" in line and re.search(r"dev F1 [01]\.\d{4}$", line), line


@needs_ncbi
def test_trainer_vs_hand_loop_prints_both_ratios(run_bench, tiny_bert_dir):
    result = run_bench("trainer_vs_hand_loop.py", "--model", str(tiny_bert_dir), "--max-docs", "3", "--repeats", "1",
                       "--dummy-examples", "64", "--ner-sentences", "20")
    ratios = figures(last_line(result),
                     r"train-epoch ratio Trainer / hand loop: dummy (\d+\.\d{3}), ner (\d+\.\d{3}) \(goal <= 1\.03\)")
    assert all(ratio > 0 for ratio in ratios)


@needs_ncbi
def test_inference_vs_pipeline_finds_the_same_entities(run_bench, tiny_bert_dir, tmp_path):
    from medkit_exp.text.ner import HFEntityMatcher

    checkpoint = tmp_path / "ner"  # an untrained tiny model, saved as a NER checkpoint
    HFEntityMatcher.make_trainable(tiny_bert_dir, labels=["Disease"], tokenizer_max_length=64).save(checkpoint)
    result = run_bench("inference_vs_pipeline.py", "--model", str(checkpoint), "--max-docs", "3", "--repeats", "1",
                       "--batch-sizes", "1", "4")

    lines = result.stdout.strip().splitlines()
    assert "entities differing: 0" in result.stdout
    fp32 = [line for line in lines if line.startswith("throughput ratio HFEntityMatcher / pipeline (best batch): ")]
    assert len(fp32) == 1, lines
    assert figures(fp32[0].split("(best batch): ")[1], r"(\d+\.\d\d) \(goal >= 2\.0\)")[0] > 0
    (bf16,) = [line for line in lines if line.startswith("throughput ratio HFEntityMatcher bf16 / ")]
    assert last_line(result).startswith("throughput ratio HFEntityMatcher int8 / ")
    for line, goal in ((bf16, r" \(goal >= 4\.0, F1 within 0\.003\)"), (last_line(result), "")):
        ratio, f1, fp32_f1, difference = figures(
            line, r"throughput ratio HFEntityMatcher (?:bf16|int8) / pipeline fp32 \(best batch\): (\d+\.\d\d)"
                  + goal + r"; F1 ([01]\.\d{4}) vs fp32 ([01]\.\d{4}) \(([+-]\d\.\d{4})\)")
        assert ratio > 0 and difference == pytest.approx(f1 - fp32_f1, abs=1.5e-4)
    for precision in ("bf16", "int8"):  # each precision ran, was compared with fp32 and scored
        (line,) = [line for line in lines if line.startswith(f"HFEntityMatcher {precision} (batch")]
        assert re.search(r"agreement with fp32 [01]\.\d{4}, exact-span F1 [01]\.\d{4}$", line), line


@needs_ncbi
def test_epoch_scaling_prints_relative_times(run_bench, tiny_bert_dir):
    result = run_bench("epoch_scaling.py", "--model", str(tiny_bert_dir), "--max-docs", "5", "--base", "8")
    relative = figures(last_line(result), r"time per sentence relative to 1x: 2x (\d+\.\d{3}), 4x (\d+\.\d{3}) "
                                          r"\(goal within 0\.9-1\.1\)")
    assert all(value > 0 for value in relative)


@needs_ncbi
def test_overheads_prints_the_cfg_job_time(run_bench, tiny_bert_dir):
    result = run_bench("overheads.py", "--model", str(tiny_bert_dir), "--max-docs", "3", "--repeats", "1", "--fork")
    (seconds,) = figures(last_line(result), r"--cfg job wall time: (\d+\.\d\d) s \(median of 1; goal < 1\.5 s\)")
    assert seconds > 0
    lines = result.stdout.strip().splitlines()
    first_steps = [figures(line, r"default run, (?:new|existing) store: first step (\d+\.\d) s after launch "
                                 r"\(whole (?:1-epoch )?run (\d+\.\d) s\)")
                   for line in lines if line.startswith("default run, ")]
    assert len(first_steps) == 2 and all(0 < first <= whole for first, whole in first_steps), first_steps
    (throughput,) = [line for line in lines if line.startswith("preprocessing ")]
    tokens, per_second = figures(throughput, r"preprocessing \(NCBI-disease train sentences, ([\d,]+) tokens\): "
                                             r"([\d,]+) tokens/s")
    assert tokens > 0 and per_second > 0


@needs_ncbi
def test_ncbi_precision_quality_prints_the_bf16_difference(run_bench, tiny_bert_dir):
    result = run_bench("ncbi_precision_quality.py", "--seeds", "0", "--jobs", "1", "--fork", "--",
                       f"component.model={tiny_bert_dir}", "data.max_docs=3", "trainer.epochs=1")
    lines = result.stdout.strip().splitlines()
    (difference,) = figures(last_line(result),
                            r"mean test F1 difference bf16 - fp32: ([+-]\d\.\d{4}) \(goal within 0\.005\)")
    means = {}
    for precision in ("fp32", "bf16"):
        (line,) = [line for line in lines if line.startswith(f"mean test F1 {precision}: ")]
        (means[precision],) = figures(line, rf"mean test F1 {precision}: ([01]\.\d{{4}})")
    assert difference == pytest.approx(means["bf16"] - means["fp32"], abs=1.5e-4)
    for precision in ("fp32", "bf16"):
        (line,) = [line for line in lines if line.startswith(f"{precision:5s} seed 0:")]
        assert re.search(r"test P [01]\.\d{4} R [01]\.\d{4} F1 [01]\.\d{4} .* peak RSS \d+ MB$", line), line
    assert re.search(r"largest peak RSS: \d+ MB", result.stdout)


@needs_ncbi
def test_bf16_memory_probe_prints_each_variants_epoch_and_peak(run_bench, tiny_bert_dir):
    result = run_bench("bf16_memory_probe.py", "--model", str(tiny_bert_dir), "--max-docs", "2",
                       "--variants", "fp32", "bf16", "--fork")
    lines = result.stdout.strip().splitlines()
    assert last_line(result).startswith("bf16 ")
    for variant in ("fp32", "bf16"):
        (line,) = [line for line in lines if line.startswith(f"{variant} ")]
        seconds, peak, sentences = figures(
            line, rf"{variant} +epoch +(\d+\.\d) s  peak RSS +(\d+) MB  \((\d+) sentences\)")
        assert seconds >= 0 and peak > 0 and sentences > 0


@needs_ncbi
def test_compile_vs_eager_prints_the_break_even(run_bench, tiny_bert_dir):
    result = run_bench("compile_vs_eager.py", "--model", str(tiny_bert_dir), "--max-docs", "2", "--epochs", "2",
                       "--precision", "fp32", "--fork")
    (ratio,) = figures(last_line(result), r"steady epoch ratio compiled / eager: (\d+\.\d{3}); break-even: "
                                          r"(?:\d+ steps|never)")
    assert ratio > 0
    assert re.search(r"compile cost: -?\d+\.\d s", result.stdout)


def test_optuna_pruning_prints_both_searches_and_their_ratios(run_bench, tiny_bert_dir):
    # The demo corpus (no preset) and no MLflow store: half the time of the NCBI preset with tracking.
    result = run_bench("optuna_pruning.py", "--experiment", "", "--model", str(tiny_bert_dir), "--max-docs", "4",
                       "--trials", "2", "--epochs", "2", "--startup-trials", "1", "--threads", "1", "--fork", "--",
                       "tracking=none")
    lines = result.stdout.strip().splitlines()
    sides = {}
    for side in ("unpruned", "pruned"):
        (line,) = [line for line in lines if line.strip().startswith(f"{side}: ")]
        run, full, complete, pruned, failed, wall, best = figures(
            line.strip(), rf"{side}: (\d+) epochs of (\d+), (\d+) complete, (\d+) pruned, (\d+) failed, wall (\d+) s, "
                          r"best eval_f1 ([01]\.\d{4}) \(trial \d+: .*\)")
        assert full == 2 * 2 and complete + pruned + failed == 2 and 0 < run <= full and wall >= 0, line
        sides[side] = run, best
    assert sides["unpruned"][0] == 4  # no pruner: every trial runs its every epoch
    (wall_ratio,) = figures(lines[-3], r"wall time pruned/unpruned: (\d+\.\d{3})")
    (difference,) = figures(lines[-2], r"best eval_f1 difference \(pruned - unpruned\): ([+-]\d\.\d{4})")
    (epoch_ratio,) = figures(last_line(result), r"epochs pruned/unpruned: (\d+\.\d{3})")
    assert wall_ratio > 0
    assert difference == pytest.approx(sides["pruned"][1] - sides["unpruned"][1], abs=1.5e-4)  # of the printed bests
    assert epoch_ratio == pytest.approx(sides["pruned"][0] / sides["unpruned"][0], abs=5e-4)


SCALING_PHASES = ("read", "preprocess", "train epoch", "dev eval", "test predict", "test report", "plots", "mlflow")


@needs_ncbi
def test_scaling_prints_every_phase_exponent_and_the_long_document_ratio(run_bench):
    result = run_bench("scaling.py", "--quick")
    lines = result.stdout.strip().splitlines()
    for axis, labels in (("corpus", ("1x", "2x", "4x")), ("document", ("4k", "8k", "16k"))):
        measured = [line for line in lines if line.startswith(f"{axis} ")]
        assert [line.split()[1] for line in measured] == list(labels), lines
        for line in measured:  # every phase ran at every size, with its time and peak memory
            for phase in SCALING_PHASES:
                assert re.search(rf"[:;] {phase} \d+\.\d\d s cpu \d+\.\d\d s wall -?\d+ MB(;|$)", line), (phase, line)
    number, time = r"(-?\d+\.\d\d)", r"(\d+\.\d\d) s, (-?\d+) MB"
    for phase in SCALING_PHASES:
        (row,) = [line for line in lines if line.startswith(phase + " ") and "|" in line]
        figures(row.rstrip(), rf"{phase} *\| {number} *\| {time} *\| {number} *\| {time} *(?:<-- k > 1\.15 \(.*\))?")
    assert any(line.startswith("phases over the goal: ") for line in lines)
    (ratio,) = figures(last_line(result), r"test predict \+ report, one 16,000-character document / 4 documents: "
                                          r"(\d+\.\d{3}) \(goal < 2\)")
    assert ratio > 0


def _scaling_module():
    return _bench_module("scaling")


def test_scaling_fits_the_exponent_and_bounds_it_past_the_budget():
    scaling = _scaling_module()
    sizes = [1.0, 2.0, 4.0, 8.0]
    result = scaling.AxisResult("corpus", "cpu", budget=1.0, labels=["1x", "2x", "4x", "8x"], sizes=sizes)
    result.cpu.update({"read": [0.5 * s for s in sizes], "test report": [0.1, 0.4, 0.9, None]})
    result.over_budget["test report"] = 2  # stopped at 4x after 0.9 s of CPU time, not run at 8x
    assert scaling.exponent(result, "read") == (pytest.approx(1.0), False)
    k, bound = scaling.exponent(result, "test report")
    assert bound and k == pytest.approx(math.log(9) / math.log(4), rel=1e-3)  # 0.1 at 1x to 0.9 at 4x
    assert scaling.largest(result, "test report") == "> 0.9 s (stopped) at 4x"


def test_scaling_clock_stops_a_phase_past_its_budget():
    scaling = _scaling_module()
    clock = scaling.PhaseClock(scaling.RssSampler(), budget=0.2)
    deadline = time.monotonic() + 30  # without the budget's stop, the phase returns after 30 s and the test fails
    with pytest.raises(scaling.PhaseTimeout):
        clock.run("test report", lambda: all(time.monotonic() < deadline for _ in iter(int, 1)))
    assert clock.timed_out == {"test report"} and clock.current is None
    assert 0.2 <= clock.wall["test report"] < 30 and clock.cpu["test report"] > 0


def test_scaling_profiles_the_phases_it_is_asked_to(capsys):
    scaling = _scaling_module()
    clock = scaling.PhaseClock(scaling.RssSampler(), budget=60, profile=frozenset({"test report"}))

    def slow_report():
        return sum(i * i for i in range(300_000))

    clock.run("read", lambda: sum(range(1000)))
    clock.run("test report", slow_report)
    scaling.print_profile(clock, top=5)
    printed = capsys.readouterr().out
    assert "profile of test report" in printed and "profile of read" not in printed
    assert re.search(r"\d+\.\d\d s own +\d+\.\d\d s with callees +[\d,]+ calls  "
                     r"tests/test_bench_smoke\.py:\d+\(<genexpr>\)", printed), printed


def test_single_document_prints_the_scoring_to_epoch_ratio(run_bench, tiny_bert_dir):
    result = run_bench("single_document.py", "--max-docs", "4", "--test-chars", "12000", "--model", str(tiny_bert_dir))
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()

    def line_starting(prefix: str) -> str:
        (line,) = [line for line in lines if line.startswith(prefix)]
        return line

    # no -DOCSTART-: each split is one document; the test abstracts are repeated to the size asked
    (test_chars,) = figures(line_starting("splits read as one document each: "),
                            r"splits read as one document each: train 1 document\(s\), [\d,]+ characters, "
                            r"dev 1 document\(s\), [\d,]+ characters, test 1 document\(s\), ([\d,]+) characters")
    assert test_chars >= 12000
    (epoch_s,) = figures(line_starting("training epoch"),
                         r"training epoch on the [\d,]+-character train document: (\d+\.\d) s")
    (scoring_s,) = figures(line_starting("test scoring"), r"test scoring of the [\d,]+-character test document with "
                           r"its error report \([\d,]+ error rows, exact-span F1 [01]\.\d{4}\): (\d+\.\d) s")
    (ratio,) = figures(last_line(result), r"ratio test scoring / training epoch: (\d+\.\d{3}) \(goal < 1\)")
    # times printed to 0.1 s and the ratio to 0.001: each rounding bounds the product's error (a long epoch on
    # a busy machine makes the ratio's rounding count)
    assert ratio * epoch_s == pytest.approx(scoring_s, abs=0.05 * (1 + ratio) + 0.0005 * epoch_s + 0.01)


def test_significance_cost_prints_its_seconds(run_bench):
    result = run_bench("significance_cost.py", "--documents", "20", "--repeats", "1", "--interval-resamples", "200",
                       "--test-resamples", "500")
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("data: 20 documents (synthetic), "), lines[0]
    point, low, high = figures(lines[2].split(" (95% CI")[0], r"f1 = (\d\.\d{4}) \[(\d\.\d{4}), (\d\.\d{4})\]")
    assert low <= point <= high
    figures(last_line(result), r"seconds: interval (\d+\.\d{3}) \(goal < 2\), paired bootstrap (\d+\.\d{3}), "
                               r"approximate randomization (\d+\.\d{3}) \(500 resamples each; goal < 10\)")


def _bench_module(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up
    sys.path.insert(0, str(REPO_ROOT / "bench"))  # its `from common import ...`
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(REPO_ROOT / "bench"))
    return module


def test_annotation_errors_injects_seeded_errors_into_train_and_dev_only():
    bench = _bench_module("annotation_errors")

    def entities(splits):
        return {name: [(d.id, e.start, e.end, e.label) for d in docs for e in d.anns.entities]
                for name, docs in splits.items()}

    clean = entities(bench.demo_splits(40))
    splits = bench.demo_splits(40)
    injected = bench.inject(splits, 6, 4, seed=3)
    corrupted = entities(splits)
    assert [e.kind for e in injected] == ["label change"] * 6 + ["deletion"] * 4
    assert len({(e.document_id, e.start) for e in injected}) == 10  # ten different entities
    assert corrupted["test"] == clean["test"]
    before = {(d, s, e): label for split in ("train", "dev") for d, s, e, label in clean[split]}
    after = {(d, s, e): label for split in ("train", "dev") for d, s, e, label in corrupted[split]}
    for error in injected:
        where = (error.document_id, error.start, error.end)
        assert before[where] == error.label
        if error.kind == "deletion":
            assert where not in after
        else:
            assert after[where] == error.new_label != error.label
            assert error.new_label in {"problem", "treatment", "test"}
    assert len(after) == len(before) - 4 and sum(after[k] != before[k] for k in after) == 6
    again = bench.demo_splits(40)
    assert bench.inject(again, 6, 4, seed=3) == injected and entities(again) == corrupted  # seeded


def test_annotation_errors_matches_a_suspect_by_span_and_kind():
    bench = _bench_module("annotation_errors")
    change = bench.Injected("label change", "d1", 10, 20, "x", "problem", "test")
    deletion = bench.Injected("deletion", "d1", 30, 35, "y", "test")

    def row(kind, start, end, document="d1"):
        return bench.Row(1, kind, document, start, end, "", "", "")

    assert row("label_swap", 15, 25).finds(change) and row("rejected_gold", 5, 11).finds(change)
    assert not row("missed_annotation", 10, 20).finds(change)  # the wrong kind
    assert not row("label_swap", 20, 30).finds(change)  # touching is not overlapping
    assert not row("label_swap", 10, 20, document="d2").finds(change)
    assert row("missed_annotation", 30, 31).finds(deletion) and not row("label_swap", 30, 35).finds(deletion)


def test_annotation_errors_prints_the_share_of_injected_errors_among_the_top_suspects(run_bench, tiny_bert_dir):
    result = run_bench("annotation_errors.py", "--model", str(tiny_bert_dir), "--max-docs", "12", "--folds", "2",
                       "--epochs", "1", "--lr", "5e-3", "--changes", "3", "--deletions", "2", "--top", "10",
                       "--threads", "1", "--fork", timeout=600)
    lines = result.stdout.strip().splitlines()

    def line_starting(prefix: str) -> str:
        (line,) = [line for line in lines if line.startswith(prefix)]
        return line

    assert line_starting("injected (seed 0): ") == ("injected (seed 0): 3 label changes and 2 deletions in 5 "
                                                    "documents of train + dev")
    assert re.search(r"2-fold cross-validation \(.*, 1 epochs, lr 0\.005, batch 16\) in \d+ s: Cross-validation "
                     r"\(2 folds\): dev F1 ", line_starting("2-fold cross-validation")), lines
    ranked, shown = figures(line_starting("suspects: "), r"suspects: (\d+) ranked \(.*\); the top (\d+): .*")
    assert shown == min(10, ranked)
    (changes,) = figures(line_starting("label changes found"),
                         r"label changes found among the top 10: (\d+)/3 \(matched by .*\)")
    (deletions,) = figures(line_starting("deletions found"),
                           r"deletions found among the top 10: (\d+)/2 \(matched by .*\)")
    assert len([line for line in lines if line.startswith("  missed: ")]) == 5 - changes - deletions
    precision, true, top = figures(line_starting("precision of the top 10: "),
                                   r"precision of the top 10: ([01]\.\d\d) \((\d+) of (\d+) suspects are injected "
                                   r"errors; the others: .*\)")
    assert top == shown and precision == pytest.approx(true / top if top else 0, abs=0.005)
    assert re.fullmatch(r"machine: .+, \d+ cores, torch \S+, 1 threads per fold job \(folds one after another\)",
                        lines[-2]), lines[-2]
    share, hits, a, b = figures(last_line(result), r"injected errors among the top 10 suspects: ([01]\.\d\d) \((\d+) "
                                                   r"of 5; label changes (\d+)/3, deletions (\d+)/2\) \(goal >= 0\.5\)")
    assert (a, b) == (changes, deletions) and hits == a + b and share == pytest.approx(hits / 5, abs=0.005)
