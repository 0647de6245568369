"""Checkpoint folders: written atomically, indexed, rotated, and read back to resume.

Layout under the trainer's ``output_dir``::

    checkpoint_003/
        model/                 what the component's ``save`` wrote (HF format for HF models)
        trainer_state.pt       optimizer, scheduler, RNG states, loop counters, history
        trainer_state.json     the same counters in readable form, plus the config
    checkpoints.json           {"last": ..., "best": ..., "best_metric": ...}

A checkpoint is first written to a hidden temporary folder and renamed into place only
when complete, and the index is replaced atomically after it: a crash at any moment
leaves the previous best and last checkpoints intact and the index pointing at them.

Names sort in the order they were written, so medkit's way of finding the last checkpoint,
``sorted(glob(output_dir + "/checkpoint_*"))[-1]``, finds it here too: an epoch's checkpoint
is ``checkpoint_003``, and one written mid-epoch (``checkpoint_003_step_000123``, after an
interruption) is deleted as soon as a later checkpoint exists.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from medkit_exp.errors import MedkitExpError
from medkit_exp.training.config import TrainerConfig
from medkit_exp.training.loop_state import LoopState, tracked_metric

INDEX_FILE = "checkpoints.json"
MODEL_DIR = "model"
STATE_FILE = "trainer_state.pt"
STATE_JSON = "trainer_state.json"
PREFIX = "checkpoint_"
MID_EPOCH = "_step_"
LEGACY_PREFIX = "checkpoint-epoch-"  # the names before medkit's glob was followed; still rotated


class CheckpointError(MedkitExpError, RuntimeError):
    """A checkpoint cannot be found, read or written."""


def is_due(epoch: int, improved: bool, config: TrainerConfig) -> bool:
    """Whether epoch ``epoch`` ends with a checkpoint: every ``checkpoint_period`` epochs (0: never
    for that reason), at a new best, and at the last epoch."""
    periodic = config.checkpoint_period > 0 and epoch % config.checkpoint_period == 0
    return periodic or improved or epoch == config.epochs


def checkpoint_name(epoch: int, global_step: int | None = None) -> str:
    """``checkpoint_003`` at an epoch end, ``checkpoint_003_step_000123`` mid-epoch."""
    name = f"{PREFIX}{epoch:03d}"
    return name if global_step is None else f"{name}{MID_EPOCH}{global_step:06d}"


def capture_rng_states() -> dict[str, Any]:
    states: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    try:
        import numpy as np

        state = np.random.get_state(legacy=False)
        # Plain data and a tensor, not a numpy array: the state file then loads with
        # torch.load(weights_only=True), which never runs code from the file.
        mt19937 = state["state"]
        states["numpy"] = {"kind": state["bit_generator"], "keys": torch.from_numpy(mt19937["key"].astype(np.int64)),
                           "pos": int(mt19937["pos"]), "has_gauss": int(state["has_gauss"]),
                           "gauss": float(state["gauss"])}
    except ImportError:  # numpy is optional for the loop itself
        pass
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    if "numpy" in states:
        import numpy as np

        saved = states["numpy"]
        np.random.set_state((saved["kind"], saved["keys"].numpy().astype(np.uint32), saved["pos"],
                             saved["has_gauss"], saved["gauss"]))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write_json_atomic(path: Path, payload: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; give it the usual permissions
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(payload, f, indent=2, default=str)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_writable(output_dir: Path) -> None:
    """Raise `CheckpointError` now if checkpoints could not be written to ``output_dir``."""
    try:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=output_dir, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise CheckpointError(
            f"trainer.output_dir={output_dir} is not writable ({exc.strerror or exc}); "
            "choose a folder you can write to"
        ) from exc


def read_index(output_dir: Path) -> dict[str, Any]:
    """The index of ``output_dir`` (``checkpoints.json``); {} before its first checkpoint."""
    path = Path(output_dir) / INDEX_FILE
    if not path.exists():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def indexed_checkpoint(output_dir: Path, which: str) -> Path | None:
    """The checkpoint folder the index of ``output_dir`` names ``which`` ("best" or "last"), if any."""
    name = read_index(output_dir).get(which)
    return Path(output_dir) / name if name else None


def trainer_state(optimizer: torch.optim.Optimizer, scheduler: Any, loop: LoopState,
                  config: TrainerConfig) -> dict[str, Any]:
    """What a checkpoint's ``trainer_state.pt`` holds to resume: the optimizer's and the scheduler's
    states, the RNG states, the loop's counters and the config."""
    return {
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "rng": capture_rng_states(),
        "loop": asdict(loop),
        "config": asdict(config),
    }


def checkpoint_summary(epoch: int, loop: LoopState, config: TrainerConfig, value: float | None,
                       is_best: bool) -> dict[str, Any]:
    """What a checkpoint's ``trainer_state.json`` says (read back by `read_checkpoint_summary`): its epoch,
    whether that epoch was complete, the step, the checkpoint metric's name and ``value``,
    whether it is the best so far, the best epoch, and the config."""
    return {
        "epoch": epoch,
        "complete_epoch": loop.batches_done == 0,
        "global_step": loop.global_step,
        "metric": config.checkpoint_metric,
        "value": value,
        "is_best": is_best,
        "best_epoch": loop.best_epoch,
        "config": asdict(config),
    }


def read_checkpoint_summary(checkpoint_dir: Path) -> dict[str, Any]:
    """What a checkpoint's ``trainer_state.json`` says (`checkpoint_summary`; files of older
    versions may lack some keys): {} when the folder holds no such file; `CheckpointError` when
    it cannot be read or is not a JSON object."""
    path = Path(checkpoint_dir) / STATE_JSON
    if not path.is_file():
        return {}
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read {path}: {exc}") from exc
    if not isinstance(summary, dict):
        raise CheckpointError(f"cannot read {path}: it holds a {type(summary).__name__}, not an object")
    return summary


def write_checkpoint(
    output_dir: Path,
    name: str,
    save_model: Callable[[Path], None],
    trainer_state: dict[str, Any],
    summary: dict[str, Any],
) -> Path:
    """Write checkpoint folder ``name`` atomically and return its final path."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    final = output_dir / name
    tmp = Path(tempfile.mkdtemp(dir=output_dir, prefix=f".tmp-{final.name}-"))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private; a checkpoint is shared like any folder
    try:
        save_model(tmp / MODEL_DIR)
        torch.save(trainer_state, tmp / STATE_FILE)
        (tmp / STATE_JSON).write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
        if final.exists():  # the same epoch written again (a resumed run): swap, then drop the old one
            old = output_dir / f".old-{final.name}-{os.getpid()}"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def save_checkpoint(output_dir: Path, name: str, save_model: Callable[[Path], None], optimizer: torch.optim.Optimizer,
                    scheduler: Any, loop: LoopState, config: TrainerConfig, epoch: int, improved: bool) -> Path:
    """Write checkpoint ``name`` of epoch ``epoch`` as the loop is now (the model, `trainer_state`,
    `checkpoint_summary`), index it (as the best too when ``improved``), rotate the older ones;
    return its folder."""
    value = tracked_metric(loop.history[-1], config.checkpoint_metric) if loop.history else None
    summary = checkpoint_summary(epoch, loop, config, value, improved)
    path = write_checkpoint(output_dir, name, save_model, trainer_state(optimizer, scheduler, loop, config), summary)
    record_checkpoint(output_dir, path, metric=config.checkpoint_metric, mode=config.checkpoint_mode,
                      keep=config.keep_checkpoints, best=loop if improved else None)
    return path


def update_index(output_dir: Path, index: dict[str, Any]) -> None:
    _write_json_atomic(Path(output_dir) / INDEX_FILE, index)


def record_checkpoint(output_dir: Path, path: Path, *, metric: str, mode: str, keep: int,
                      best: LoopState | None = None) -> None:
    """Make checkpoint ``path`` the index's last (and its best, at ``best``'s metric and epoch,
    when given), then delete the checkpoints `rotate_checkpoints` no longer keeps."""
    index = read_index(output_dir)
    index.update({"last": path.name, "metric": metric, "mode": mode})
    if best is not None:
        index.update({"best": path.name, "best_metric": best.best_metric, "best_epoch": best.best_epoch})
    update_index(output_dir, index)
    rotate_checkpoints(output_dir, index, keep)


def rotate_checkpoints(output_dir: Path, index: dict[str, Any], keep: int) -> None:
    """Delete old checkpoints, keeping the best, the last and the ``keep`` most recent others.

    A mid-epoch checkpoint is kept only while it is the last: it exists to resume, and once
    a later one is written it would only be found, wrongly, as the last by a name sort."""
    protected = {index.get("best"), index.get("last")}
    folders = [*Path(output_dir).glob(f"{PREFIX}*"), *Path(output_dir).glob(f"{LEGACY_PREFIX}*")]
    others = sorted((p for p in folders if p.is_dir() and p.name not in protected), key=lambda p: p.name)
    superseded = [p for p in others if MID_EPOCH in p.name]
    others = [p for p in others if MID_EPOCH not in p.name]
    for path in superseded + others[: max(len(others) - keep, 0)]:
        shutil.rmtree(path, ignore_errors=True)


def resolve_checkpoint(resume_from: str, output_dir: Path) -> Path:
    """Turn ``trainer.resume_from`` ("last", "best" or a folder) into a checkpoint folder."""
    if resume_from in ("last", "best"):
        index = read_index(output_dir)
        name = index.get(resume_from)
        if not name:
            raise CheckpointError(
                f"trainer.resume_from={resume_from}: no checkpoint index in {output_dir}; "
                "point trainer.output_dir at the earlier run's folder or give a checkpoint path"
            )
        path = Path(output_dir) / name
    else:
        path = Path(resume_from)
    if not (path / STATE_FILE).is_file() or not (path / MODEL_DIR).is_dir():
        raise CheckpointError(
            f"trainer.resume_from={resume_from}: {path} is not a checkpoint folder "
            f"(expected {MODEL_DIR}/ and {STATE_FILE} inside)"
        )
    return path


def check_optimizer_state(optimizer: torch.optim.Optimizer, saved: dict[str, Any], resume_from: str) -> None:
    """Raise `CheckpointError` unless the saved optimizer state fits ``optimizer``'s parameters,
    one by one (torch checks only their number, and a mismatch would fail at the first step)."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    saved_ids = [i for group in saved.get("param_groups", []) for i in group["params"]]
    problem = None
    if len(saved_ids) != len(params):
        problem = f"{len(saved_ids)} parameters, the model being resumed {len(params)}"
    else:
        for position, (param, saved_id) in enumerate(zip(params, saved_ids, strict=True)):
            moment = saved.get("state", {}).get(saved_id, {}).get("exp_avg")
            if isinstance(moment, torch.Tensor) and moment.shape != param.shape:
                problem = f"parameter {position} of shape {tuple(moment.shape)}, the model's is {tuple(param.shape)}"
                break
    if problem:
        raise CheckpointError(
            f"trainer.resume_from={resume_from}: its optimizer state has {problem}; resume with the training "
            "data and component settings of the run that wrote it (the trained embedding rows are those of the "
            "training data's tokens), or start a new run from its model/ folder"
        )


def load_for_resume(resume_from: str, output_dir: Path, load_model: Callable[[Path], None]) -> dict[str, Any]:
    """Load the model of ``trainer.resume_from``'s checkpoint with ``load_model``; return its trainer
    state (for `restore_training`, once the optimizer exists)."""
    checkpoint_dir = resolve_checkpoint(resume_from, output_dir)
    saved = load_trainer_state(checkpoint_dir)
    try:
        load_model(checkpoint_dir / MODEL_DIR)
    except (ValueError, OSError) as exc:  # another model or label set
        raise CheckpointError(f"cannot resume from {checkpoint_dir}: {exc}") from exc
    return saved


def restore_training(saved: dict[str, Any], optimizer: torch.optim.Optimizer, scheduler: Any,
                     resume_from: str) -> LoopState:
    """Continue from a checkpoint's trainer state: the optimizer's and scheduler's states, the RNG
    states; return the loop's counters."""
    check_optimizer_state(optimizer, saved["optimizer"], resume_from)
    optimizer.load_state_dict(saved["optimizer"])
    if scheduler is not None and saved.get("scheduler") is not None:
        scheduler.load_state_dict(saved["scheduler"])
    loop = LoopState(**saved["loop"])
    restore_rng_states(saved["rng"])
    return loop


def load_trainer_state(checkpoint_dir: Path) -> dict[str, Any]:
    """The trainer state of a checkpoint, read with ``weights_only=True``: tensors and plain data
    only, so a state file from elsewhere cannot run code when it is loaded."""
    path = Path(checkpoint_dir) / STATE_FILE
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
        reason = f"it asks for {found.group(1)}" if found else type(exc).__name__
        raise CheckpointError(f"{path} holds more than tensors and plain data, so it was not loaded (loading it "
                              f"could run code: {reason}); resume only from checkpoints written by medkit_exp") from exc
    except Exception as exc:  # a truncated or foreign file
        raise CheckpointError(f"cannot read {path}: {exc}") from exc

