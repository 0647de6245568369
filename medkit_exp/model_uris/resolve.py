"""Resolve a model URI to a local HF model folder: ask the store what it names, download it once
into the cache (`medkit_exp.model_uris.cache`), and say where it came from (for lineage).

Every way this can fail is a `UserError` of one line, raised before any model loads: a run, a
registered model, a version or an alias that does not exist, a path that holds no model, a
store that is not there or a server that does not answer (within seconds: MLflow's client
retries for minutes by default, so retries are off and requests time out during resolution).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medkit_exp.errors import UserError
from medkit_exp.model_uris.cache import cached_model, find_model_folder
from medkit_exp.model_uris.store_uri import shown_uri, sqlite_path, tracking_uri_or_default
from medkit_exp.model_uris.uris import BEST_CHECKPOINT, ModelUri, is_run_id, parse_model_uri

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

# Set for the resolution only: one try per request, a few seconds each.
FAIL_FAST_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
                 "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}


@dataclass(frozen=True)
class ResolvedModel:
    """Where a model URI led.

    ``given``: the URI as written; ``concrete``: what it named at resolution (``runs:/<id>/<path>``,
    ``models:/<name>/<version>`` for an alias too, ``models:/m-<id>``); ``local_path``: the HF
    model folder in the cache; ``source_run_id``: the run that produced the model;
    ``model_id``: its MLflow LoggedModel, when there is one; ``downloaded``: whether this
    resolution downloaded it (False: the cache had it).
    """

    given: str
    concrete: str
    local_path: Path
    tracking_uri: str
    source_run_id: str | None
    model_id: str | None
    downloaded: bool


def resolve_model_uri(value: str, tracking_uri: str | None = None, option: str = "component.model") -> ResolvedModel:
    """Resolve ``value`` (see `medkit_exp.model_uris.parse_model_uri`) against ``tracking_uri``
    (default ``$MLFLOW_TRACKING_URI``, else SQLite under ``./mlruns``). ``option`` names the
    setting in errors."""
    uri = parse_model_uri(value, option)
    store = tracking_uri_or_default(tracking_uri)
    db = sqlite_path(store)
    if db is not None and not db.is_file():
        raise UserError(f"{option}={value}: there is no MLflow store at {db}; run from the folder that holds "
                        "mlruns/, or set tracking.uri (or MLFLOW_TRACKING_URI) to the store that holds the model")
    resolver = _Resolver(uri, store, option)
    with _fail_fast(), resolver.mlflow_errors():
        return resolver.resolve()


@contextmanager
def _fail_fast() -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in FAIL_FAST_ENV}
    os.environ.update(FAIL_FAST_ENV)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class _Resolver:
    def __init__(self, uri: ModelUri, store: str, option: str) -> None:
        from mlflow import MlflowClient

        self.uri, self.store, self.option = uri, store, option
        self.registry = os.environ.get("MLFLOW_REGISTRY_URI") or store
        self.client: MlflowClient = MlflowClient(tracking_uri=store, registry_uri=self.registry)

    def refuse(self, problem: str, fix: str) -> UserError:
        return UserError(f"{self.option}={self.uri.given}: {problem}; {fix}")

    @contextmanager
    def mlflow_errors(self) -> Iterator[None]:
        """MLflow's failures not handled where they happen, as one line each."""
        from mlflow.exceptions import MlflowException

        try:
            yield
        except MlflowException as exc:
            if _unreachable(str(exc)):
                raise self._unreachable_error(str(exc)) from None
            first = str(exc.message).splitlines()[0] if exc.message else type(exc).__name__
            raise self.refuse(f"MLflow could not read it from {shown_uri(self.store)} ({first[:300]})",
                              "check the URI and tracking.uri") from None
        except OSError as exc:  # a connection dropped mid-download
            if self.store.startswith(("http://", "https://")):
                raise self._unreachable_error(str(exc)) from None
            raise

    def _unreachable_error(self, message: str) -> UserError:
        reason = re.search(r"\[Errno [^\]]*\][^\"')]*|timed out|Connection refused|Name or service not known", message)
        return self.refuse(f"the tracking server {shown_uri(self.store)} is unreachable "
                           f"({reason.group(0).strip() if reason else 'no answer'})",
                           "start it, or set tracking.uri (or MLFLOW_TRACKING_URI) to the store that holds the model")

    def resolve(self) -> ResolvedModel:
        if self.uri.kind == "run":
            return self._from_run()
        if self.uri.kind == "registered":
            return self._from_registered()
        return self._from_logged_model()

    # ------------------------------------------------------------------ runs:/ and bare run ids
    def _from_run(self) -> ResolvedModel:
        uri = self.uri
        assert uri.run_id is not None
        run = self._run(uri.run_id)
        if uri.path and not self.client.list_artifacts(uri.run_id, uri.path):
            shown = ", ".join(a.path for a in self.client.list_artifacts(uri.run_id)) or "none"
            if is_run_id(uri.given):
                raise self.refuse(f"run {uri.run_id} logged no {BEST_CHECKPOINT}/ (its artifacts: {shown})",
                                  "train it with tracking on and tracking.log_checkpoints=best, or name a "
                                  "model folder of the run as runs:/<run_id>/<path>")
            raise self.refuse(f"run {uri.run_id} has no artifact folder {uri.path!r} (its artifacts: {shown})",
                              "name a folder that holds a HF model (config.json), e.g. "
                              f"runs:/{uri.run_id}/{BEST_CHECKPOINT}")
        from mlflow.artifacts import download_artifacts

        def download(scratch: Path) -> Path:
            local = download_artifacts(run_id=uri.run_id, artifact_path=uri.path or None, dst_path=str(scratch),
                                       tracking_uri=self.store)
            return self._model_folder(Path(local), f"the run's artifact folder {uri.path or '(root)'!r}")

        key = ("run", self.store, uri.run_id, uri.path)
        folder, downloaded = cached_model(f"run-{uri.run_id}-{uri.path}", key, download)
        return ResolvedModel(uri.given, f"runs:/{uri.run_id}/{uri.path}".rstrip("/"), folder, self.store,
                             uri.run_id, self._logged_model_of(run), downloaded)

    def _run(self, run_id: str) -> Run:
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_run(run_id)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
        raise self.refuse(f"no run {run_id} in the store {shown_uri(self.store)}",
                          "check the run id (the MLflow UI shows it) and tracking.uri")

    def _logged_model_of(self, run: Run) -> str | None:
        """The newest LoggedModel the run produced (the model of the UI's lineage), if any."""
        from mlflow.exceptions import MlflowException

        try:
            found = self.client.search_logged_models(
                experiment_ids=[run.info.experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'",
                order_by=[{"field_name": "creation_timestamp", "ascending": False}], max_results=1)
        except MlflowException:  # a store without logged models: no lineage link, nothing wrong
            return None
        return found[0].model_id if found else None

    # ------------------------------------------------------------------ models:/
    def _from_registered(self) -> ResolvedModel:
        uri = self.uri
        assert uri.name is not None
        version = self._version()
        concrete = f"models:/{uri.name}/{version.version}"
        key = ("registered", self.registry, uri.name, str(version.version))
        # The version's own storage location: a models:/ URI would be read from MLflow's global registry.
        location = self.client.get_model_version_download_uri(uri.name, str(version.version))
        folder, downloaded = cached_model(f"{uri.name}-v{version.version}", key,
                                          self._model_download(location, f"version {version.version}"))
        model_id = getattr(version, "model_id", None) or _model_id_of_source(version.source)
        return ResolvedModel(uri.given, concrete, folder, self.store, version.run_id or None, model_id, downloaded)

    def _version(self) -> Any:
        from mlflow.exceptions import MlflowException

        uri = self.uri
        assert uri.name is not None
        try:
            if uri.alias is not None:
                return self.client.get_model_version_by_alias(uri.name, uri.alias)
            return self.client.get_model_version(uri.name, str(uri.version))
        except MlflowException as exc:
            if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                raise
        model = self._registered_model(uri.name)
        if uri.alias is not None:
            aliases = ", ".join(f"@{a}" for a in sorted(getattr(model, "aliases", {}) or {})) or "none"
            raise self.refuse(f"registered model {uri.name!r} has no alias {uri.alias!r} (its aliases: {aliases})",
                              f"set it (MlflowClient().set_registered_model_alias) or name a version: "
                              f"models:/{uri.name}/<version>")
        versions = sorted(int(v.version) for v in self.client.search_model_versions(f"name = '{uri.name}'"))
        known = ", ".join(map(str, versions)) or "none"
        raise self.refuse(f"registered model {uri.name!r} has no version {uri.version} (its versions: {known})",
                          "name one of its versions")

    def _registered_model(self, name: str) -> Any:
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_registered_model(name)
        except MlflowException as exc:
            if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                raise
        raise self.refuse(f"no registered model {name!r} in the store {shown_uri(self.registry)}",
                          "check the name (the MLflow UI's Models page lists them) and tracking.uri")

    def _from_logged_model(self) -> ResolvedModel:
        from mlflow.exceptions import MlflowException

        uri = self.uri
        assert uri.model_id is not None
        try:
            model = self.client.get_logged_model(uri.model_id)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            raise self.refuse(f"no logged model {uri.model_id} in the store {shown_uri(self.store)}",
                              "check the id (a run's summary prints its MLflow model) and tracking.uri") from None
        concrete = f"models:/{uri.model_id}"
        folder, downloaded = cached_model(f"logged-{uri.model_id}", ("logged", self.store, uri.model_id),
                                          self._model_download(model.artifact_location, "the logged model"))
        return ResolvedModel(uri.given, concrete, folder, self.store, model.source_run_id or None, uri.model_id,
                             downloaded)

    def _model_download(self, artifact_uri: str, what: str) -> Callable[[Path], Path]:
        from mlflow.artifacts import download_artifacts

        def download(scratch: Path) -> Path:
            local = download_artifacts(artifact_uri=artifact_uri, dst_path=str(scratch), tracking_uri=self.store)
            return self._model_folder(Path(local), what)

        return download

    def _model_folder(self, local: Path, what: str) -> Path:
        try:
            folder = find_model_folder(local)
        except UserError as exc:
            raise self.refuse(f"{what} {exc}".split("; ", 1)[0], str(exc).split("; ", 1)[1]) from None
        if folder is None:
            raise self.refuse(f"{what} holds no HF model folder (no config.json in it)",
                              "name a folder that holds one, e.g. a medkit_exp run's "
                              f"runs:/<run_id>/{BEST_CHECKPOINT} or a registered medkit_exp model")
        return folder


def _unreachable(message: str) -> bool:
    return "API request to" in message and "failed with exception" in message


def _model_id_of_source(source: str | None) -> str | None:
    found = re.fullmatch(r"models:/(m-[0-9a-f]+)", source or "")
    return found.group(1) if found else None
