"""The project's errors for users share one base class, which the error reporter recognises by
class (not by name), beside Hydra's and OmegaConf's configuration errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import REPO_ROOT

# Exceptions of the package whose message is not shown to a user as it is, and why.
NOT_FOR_USERS = {
    "StopTraining": "control flow: a callback ends training early, nothing failed",
    "_LineError": "a JSONL line's reason, re-raised as a CorpusError with the file and line",
    "SearchSpaceError": "re-raised by the Optuna sweeper as a UserError naming hydra.sweeper.params",
}

# Every module of the package imported in a fresh interpreter (some have import-time effects,
# such as the MLflow model-from-code entry point): each exception class it defines, with its bases.
_LIST_EXCEPTIONS = """
import importlib, inspect, json, pkgutil
import medkit_exp
from medkit_exp.errors import MedkitExpError
found = {}
for info in pkgutil.walk_packages(medkit_exp.__path__, "medkit_exp."):
    module = importlib.import_module(info.name)
    for _, cls in inspect.getmembers(module, inspect.isclass):
        if issubclass(cls, BaseException) and cls.__module__.startswith("medkit_exp"):
            found[f"{cls.__module__}.{cls.__qualname__}"] = issubclass(cls, MedkitExpError)
print(json.dumps(found))
"""


def test_every_exception_for_users_subclasses_the_project_base():
    out = subprocess.run([sys.executable, "-c", _LIST_EXCEPTIONS], cwd=REPO_ROOT, capture_output=True, text=True,
                         check=True, timeout=300).stdout
    found = json.loads(out.strip().splitlines()[-1])
    by_name = {path.rsplit(".", 1)[1]: subclass for path, subclass in found.items()}
    outside = {path for path, subclass in found.items() if not subclass}
    assert {path.rsplit(".", 1)[1] for path in outside} == set(NOT_FOR_USERS), outside
    for name in ("UserError", "CorpusError", "OverlapError", "AnnotationError", "CheckpointError", "TrainingSetupError",
                 "NonFiniteLossError", "ModelLoggingError", "TrackingUnavailableError", "TrackingAuthError"):
        assert by_name.get(name) is True, (name, sorted(found))


def test_a_project_error_is_a_user_error_and_keeps_its_builtin_base():
    from medkit_exp.errors import is_user_error, one_line
    from medkit_exp.io.base import CorpusError
    from medkit_exp.training.checkpoint import CheckpointError

    assert is_user_error(CorpusError("data.root=x: no such folder"))
    assert isinstance(CorpusError("x"), ValueError) and isinstance(CheckpointError("x"), RuntimeError)
    assert not is_user_error(ValueError("a bug")) and not is_user_error(KeyError("a bug"))
    assert one_line(CorpusError("data.root=x: no such folder")) == "data.root=x: no such folder"


def test_hydra_and_omegaconf_errors_are_recognised_by_their_class():
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException
    from omegaconf import OmegaConf
    from omegaconf.errors import ConfigKeyError

    from medkit_exp.errors import is_user_error

    with pytest.raises(OverrideParseException) as bad_override:
        OverridesParser.create().parse_overrides(["trainer.lr=[1e-5"])
    assert is_user_error(bad_override.value)
    strict = OmegaConf.create({"trainer": {"lr": 1e-5}})
    OmegaConf.set_struct(strict, True)
    with pytest.raises(ConfigKeyError) as missing_key:
        _ = strict.trainer["lrr"]
    assert is_user_error(missing_key.value)

    # Another library's exception that merely shares a name is not taken for Hydra's.
    class OverrideParseException(Exception):
        pass

    class ValidationError(ValueError):
        pass

    assert not is_user_error(OverrideParseException("elsewhere"))
    assert not is_user_error(ValidationError("elsewhere"))


def test_the_errors_module_imports_neither_hydra_nor_omegaconf():
    code = "import sys, medkit_exp.errors; print(sorted(m for m in ('hydra', 'omegaconf') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
