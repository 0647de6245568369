"""Helpers shared by the benchmark scripts: data, model, timing, memory, the machine line, and
the launch of a side or an app run (a fresh interpreter, or with ``--fork`` a fork of this one).

Scripts import it as ``from common import ...`` (they run as ``python bench/NAME.py``, which
puts bench/ on sys.path). Nothing here is part of the medkit_exp package.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

REPO = Path(__file__).resolve().parents[1]
DEFAULT_NCBI_ROOT = REPO.parent / "shared" / "data" / "ncbi-disease"


def packaged_model() -> str:
    """Folder of the packaged all-MiniLM-L6-v2 (the default model of hf_ner)."""
    from medkit_exp.text.hf_model import PACKAGED_MINILM, resolve_model

    return resolve_model(PACKAGED_MINILM)


def load_ncbi(root: str | Path, collapse: bool = True, max_docs: int | None = None):
    """NCBI-disease documents by split, and the train and dev sentences (as the app splits them)."""
    from medkit_exp.io import NCBI_LABEL_MAP, load_brat_splits, split_into_sentences

    splits = load_brat_splits(root, label_map=NCBI_LABEL_MAP if collapse else None, overlap_policy="keep_longest")
    docs = {name: corpus.documents[:max_docs] for name, corpus in splits.items()}
    return docs, split_into_sentences(docs["train"]), split_into_sentences(docs["dev"])


def ncbi_parser(doc: str, model_help: str = "default: the packaged MiniLM"):
    """An argument parser with the options every NCBI-disease script takes."""
    import argparse

    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--data-root", default=str(DEFAULT_NCBI_ROOT))
    parser.add_argument("--model", default=None, help=model_help)
    parser.add_argument("--max-docs", type=int, default=None, help="documents per split (smoke tests)")
    return parser


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine_line() -> str:
    import torch

    forked = "; --fork: sides and app runs were forks of this process (smoke mode, not the benchmark's times)"
    return (f"machine: {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads, "
            f"python {platform.python_version()}{forked if _FORKED else ''}")


def cpu_model() -> str:
    """The CPU's model name as ``lscpu`` prints it, or what the platform says without lscpu."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown CPU"
    names = [line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")]
    return names[0] if names else platform.processor() or "unknown CPU"


def epoch_timer():
    """A TrainerCallback recording the train-phase seconds of each epoch (evaluation excluded)."""
    from medkit_exp.training import TrainerCallback

    class EpochTimer(TrainerCallback):
        def __init__(self) -> None:
            self.train_seconds: list[float] = []

        def on_epoch_begin(self, epoch):
            self.start = time.perf_counter()

        def on_step_end(self, step_idx, nb_batches, phase, batch_size=0, loss=None):
            if phase == "train" and step_idx + 1 == nb_batches:
                self.train_seconds.append(time.perf_counter() - self.start)

    return EpochTimer()


def run_side(script: Path, side: str, args: list[str], workdir: Path, threads: int | None = None,
             name: str | None = None, fork: bool = False) -> dict[str, Any]:
    """Run one side of a benchmark in a process of its own (so that its time and peak memory are its own).

    The script is called with ``--side SIDE --result FILE`` plus ``args`` and must write a
    JSON object to FILE. ``threads`` caps torch's threads there (for sides run concurrently).
    ``fork``: in a fork of this process rather than a fresh interpreter (see ``FORK_HELP``).
    """
    result_file = workdir / f"{name or side}.json"
    command = [str(script), "--side", side, "--result", str(result_file), *args]
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    completed = run_python(command, cwd=REPO, env=env, fork=fork)
    if completed.returncode != 0:
        raise SystemExit(f"the {side} side failed (exit {completed.returncode}): {' '.join(completed.args)}")
    return json.loads(result_file.read_text())


# ---------------------------------------------------------------- fork mode (the smoke tests)
FORK_HELP = ("run each side (or app run) in a fork of this process, its heavy modules imported once, instead of "
             "a fresh python: saves the seconds of imports of each (the smoke tests), but the times measured then "
             "leave out the interpreter's start and are not the benchmark's figures")
# What the sides and app runs import: imported once by the process that forks them.
PRELOAD = ("torch", "transformers", "transformers.models.bert.modeling_bert", "transformers.trainer",
           "medkit_exp.core", "medkit_exp.io", "medkit_exp.text.ner", "medkit_exp.text.ner.evaluation",
           "medkit_exp.text.metrics", "medkit_exp.training", "seqeval.metrics", "hydra", "omegaconf",
           "medkit_exp.app.run", "medkit_exp.tracking", "mlflow", "mlflow.store.tracking.sqlalchemy_store",
           "mlflow.pyfunc", "optuna", "matplotlib.pyplot")
_FORKED = False  # whether this process forked a side (the machine line says so)


def add_fork_option(parser) -> None:
    parser.add_argument("--fork", action="store_true", help=FORK_HELP)


def preload(modules: tuple[str, ...] = PRELOAD) -> None:
    """Import ``modules`` (those missing from the environment are skipped) before forking."""
    import importlib

    for name in modules:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)


def run_python(args: list[str], cwd: str | Path | None = None, env: dict[str, str] | None = None,
               capture: bool = False, fork: bool = False, timeout: float | None = None) -> subprocess.CompletedProcess:
    """``python ARGS`` (a script or ``-m MODULE``, then its arguments): a fresh interpreter, or with ``fork``
    a fork of this process that runs it with runpy (``PRELOAD`` imported first; see ``FORK_HELP``).

    Returns the CompletedProcess (its output as text when ``capture``); a forked run's also holds
    ``peak_rss_kb``, the peak resident memory of the fork.
    """
    if not fork:
        return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=capture, text=True,
                              timeout=timeout)
    import tempfile

    global _FORKED
    _FORKED = True
    preload()
    with contextlib.ExitStack() as files:
        outputs = [files.enter_context(tempfile.TemporaryFile()) for _ in range(2)] if capture else []
        status, usage = _fork_and_wait(args, cwd, env, [f.fileno() for f in outputs], timeout)
        texts = []
        for output in outputs:
            output.seek(0)
            texts.append(output.read().decode(errors="replace"))
    completed = subprocess.CompletedProcess([sys.executable, *args], os.waitstatus_to_exitcode(status),
                                            *(texts or [None, None]))
    completed.peak_rss_kb = usage.ru_maxrss
    return completed


def _fork_and_wait(args: list[str], cwd, env, fds: list[int], timeout: float | None):
    """Fork, run ``python ARGS`` in the fork (its stdout and stderr to ``fds`` if given) and wait
    for it; returns its wait status and resource usage."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        _forked_child(args, cwd, env, fds)  # never returns
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while True:
            done, status, usage = os.wait4(pid, 0 if deadline is None else os.WNOHANG)
            if done:
                return status, usage
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired([sys.executable, *args], timeout)
            time.sleep(0.02)
    except BaseException:  # a timeout or an interrupt: the fork and what it started go too
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, 9)
        os.waitpid(pid, 0)
        raise


def _forked_child(args: list[str], cwd, env, fds: list[int]) -> None:
    """In the fork: run ``python ARGS`` as a fresh interpreter would, then exit with its status."""
    import atexit
    import runpy

    global _FORKED
    _FORKED = False  # the parent's forks are not this run's
    code = 1
    try:
        os.setpgid(0, 0)  # a timeout kills the fork's own subprocesses too
        atexit._clear()  # the parent's exit handlers (its temporary folders) are not the fork's to run
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        for fd, target in zip(fds, (1, 2), strict=False):  # no fds: the outputs stay the parent's
            os.dup2(fd, target)
        if cwd is not None:
            os.chdir(cwd)
        if env is not None:
            os.environ.clear()
            os.environ.update(env)
        for entry in reversed([p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]):
            if entry not in sys.path:  # as a fresh interpreter would put it
                sys.path.insert(0, entry)
        if "torch" in sys.modules and os.environ.get("OMP_NUM_THREADS", "").isdigit():
            sys.modules["torch"].set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
        if args[0] == "-m":
            sys.argv = [args[1], *args[2:]]
            sys.path.insert(0, os.getcwd())
            runpy.run_module(args[1], run_name="__main__", alter_sys=True)
        else:
            sys.argv = list(args)
            sys.path.insert(0, str(Path(args[0]).resolve().parent))
            runpy.run_path(args[0], run_name="__main__")
        code = 0
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
    except BaseException:  # the fork is its run's top level: the traceback to stderr, as Python prints it
        log = logging.getLogger("bench.forked_run")
        log.propagate = False  # not into the handlers the run may have configured
        log.addHandler(logging.StreamHandler(sys.stderr))
        log.exception("python %s failed", " ".join(args))
    try:
        atexit._run_exitfuncs()  # those the run registered (MLflow ends its runs there)
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


def write_result(path: str | Path, result: dict[str, Any]) -> None:
    result.setdefault("peak_rss_mb", peak_rss_mb())
    Path(path).write_text(json.dumps(result, indent=2, default=float))


def ner_examples(model: str, labels: list[str], docs: list[Any], max_length: int = 128,
                 tagging_scheme: str = "iob2") -> tuple[list[dict], dict]:
    """Our preprocessing of ``docs`` (tags on first sub-tokens) as plain dicts, and the tag map.

    transformers' side of a benchmark trains on exactly these examples.
    """
    from medkit_exp.text.ner import HFEntityMatcher

    component = HFEntityMatcher.make_trainable(model, labels=labels, tokenizer_max_length=max_length,
                                               tagging_scheme=tagging_scheme)
    examples = [{k: e[k] for k in ("input_ids", "attention_mask", "labels")}
                for doc in docs for e in component.preprocess(doc)]
    return examples, dict(component.id_to_label)


def counting(collate):
    """Wrap a collate function to count the padded tokens it produces (``wrapper.padded_tokens``)."""
    def wrapper(items):
        batch = collate(items)
        wrapper.padded_tokens += int(batch["input_ids"].numel())
        return batch

    wrapper.padded_tokens = 0
    return wrapper
