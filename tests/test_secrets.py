"""Credentials never reach what a run logs."""

from __future__ import annotations

import pytest

from medkit_exp.tracking.secrets import MASK, is_secret_name, redact, redact_override, redact_text


@pytest.mark.parametrize("uri, expected", [
    ("postgresql://mlflow:pa55@db:5432/mlflow", "postgresql://mlflow:***@db:5432/mlflow"),
    ("mysql+pymysql://u:p%40ss@host/db", "mysql+pymysql://u:***@host/db"),
    ("http://alice:pw@127.0.0.1:5000", "http://alice:***@127.0.0.1:5000"),
    ("https://bob:x@mlflow.lab/prefix", "https://bob:***@mlflow.lab/prefix"),
    ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),  # no user part: unchanged
    ("sqlite:////tmp/mlruns/mlflow.db", "sqlite:////tmp/mlruns/mlflow.db"),
    ("see http://a:b@h:1 and mssql://c:d@e/f", "see http://a:***@h:1 and mssql://c:***@e/f"),
])
def test_passwords_in_uris_are_masked(uri, expected):
    assert redact_text(uri) == expected


def test_values_of_secret_settings_are_masked_at_any_depth():
    config = {"tracking": {"uri": "http://u:pw@h:1", "experiment": "x"},
              "component": {"hf_auth_token": "hf_abc", "model": "m", "api_key": None},
              "data": {"db_password": "pw2", "sources": ["https://v:w@host/a"]}, "threads": 2}
    assert redact(config) == {"tracking": {"uri": "http://u:***@h:1", "experiment": "x"},
                              "component": {"hf_auth_token": MASK, "model": "m", "api_key": None},
                              "data": {"db_password": MASK, "sources": ["https://v:***@host/a"]}, "threads": 2}


@pytest.mark.parametrize("override, expected", [
    ("tracking.uri=http://u:pw@h:1", "tracking.uri=http://u:***@h:1"),
    ("+component.hf_token=abc", "+component.hf_token=***"),
    ("trainer.lr=3e-5", "trainer.lr=3e-5"),
])
def test_overrides_are_masked(override, expected):
    assert redact_override(override) == expected


@pytest.mark.parametrize("name, secret", [
    ("db_password", True), ("component.hf_auth_token", True), ("api_key", True), ("apiKey", True),
    ("x-api-key", True), ("MLFLOW_TRACKING_PASSWORD", True), ("MLFLOW_TRACKING_TOKEN", True), ("HF_TOKEN", True),
    ("AWS_SECRET_ACCESS_KEY", True), ("private_key", True),
    ("max_tokens", False), ("tag_subtokens", False), ("TOKENIZERS_PARALLELISM", False), ("passage_len", False),
    ("HF_TOKEN_PATH", False), ("MLFLOW_TRACKING_USERNAME", False), ("PWD", False), ("OLDPWD", False),
])
def test_secret_names_are_words_not_substrings(name, secret):
    assert is_secret_name(name) is secret


def test_secret_environment_values_are_masked_in_any_text(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_abc/def 1")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "s3cret-pass")
    monkeypatch.setenv("HF_HUB_DISABLE_IMPLICIT_TOKEN", "1")  # not a credential: "1" stays everywhere
    monkeypatch.setenv("MY_API_KEY", "true")
    monkeypatch.setenv("SOME_SETTING", "not-secret-named")
    assert redact_text("run nightly-hf_abc/def 1, epoch 1, true") == "run nightly-***, epoch 1, true"
    assert redact_text("http://u:s3cret-pass@h and hf_abc%2Fdef%201") == "http://u:***@h and ***"
    assert redact_text("not-secret-named") == "not-secret-named"
    config = {"tracking": {"run_name": "x-s3cret-pass"}, "trainer": {"epochs": 1}}
    assert redact(config) == {"tracking": {"run_name": "x-***"}, "trainer": {"epochs": 1}}
    assert redact_override("tracking.run_name=hf_abc/def 1") == "tracking.run_name=***"


def test_printed_and_logged_lines_are_masked(monkeypatch):
    import io
    import logging

    from medkit_exp.app.output_redaction import RedactingStream, _redact_record

    monkeypatch.setenv("HF_TOKEN", "hf_printed_token")
    out = io.StringIO()
    stream = RedactingStream(out)
    assert stream.write("token hf_printed_token\n") == len("token hf_printed_token\n")
    stream.writelines(["see http://a:b@host\n"])
    assert out.getvalue() == "token ***\nsee http://a:***@host\n" and stream.getvalue() == out.getvalue()

    try:
        raise ValueError("bad token hf_printed_token")
    except ValueError:
        import sys

        record = logging.LogRecord("x", logging.WARNING, __file__, 1, "connecting with %s", ("hf_printed_token",),
                                   sys.exc_info())
    formatted = logging.Formatter().format(_redact_record(record))
    assert "connecting with ***" in formatted and "bad token ***" in formatted
    assert "hf_printed_token" not in formatted


@pytest.mark.parametrize("error_code, user, expected", [
    ("UNAUTHENTICATED", "alice", "authentication failed for user 'alice' (wrong user name or password); set "
                                 "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"),
    ("UNAUTHENTICATED", None, "requires authentication and no user was given; set MLFLOW_TRACKING_USERNAME"),
    ("PERMISSION_DENIED", "alice", "user 'alice' may not use experiment 'shared' (permission denied); ask the "
                                   "server's admin for EDIT on it"),
    ("INTERNAL_ERROR", "alice", "failed: boom (run with tracking=none"),
])
def test_a_refusing_server_is_explained_in_one_line(monkeypatch, error_code, user, expected):
    from mlflow.exceptions import MlflowException
    from mlflow.protos import databricks_pb2

    from medkit_exp.tracking.store import _setup_error

    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    uri = f"http://{user}:pw@h:5000" if user else "http://h:5000"
    error = _setup_error(uri, "shared", MlflowException("boom\nmore", error_code=getattr(databricks_pb2, error_code)))
    message = str(error)
    assert expected in message and "\n" not in message and ":pw@" not in message


def test_the_tracking_user_is_the_environment_one_else_the_uri_one(monkeypatch):
    from medkit_exp.tracking.store import tracking_username

    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    assert tracking_username("http://bob:pw@h:5000") == "bob"
    assert tracking_username("http://h:5000") is None
    assert tracking_username("sqlite:///tmp/mlflow.db") is None
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")  # MLflow's client sends it over the URI's
    assert tracking_username("http://bob:pw@h:5000") == "alice"
