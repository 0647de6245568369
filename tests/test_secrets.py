"""Credentials never reach what a run logs."""

from __future__ import annotations

import pytest

from medkit_exp.tracking.secrets import MASK, redact, redact_override, redact_text


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
