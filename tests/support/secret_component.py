"""A user's component that needs a credential (an API key for a private service), for tests/test_tracking_auth.py."""

from __future__ import annotations

import logging
import os
from typing import Any

from medkit_exp.text.ner.experiment import hf_ner

KEY_ENV = "MEDKIT_TEST_SERVICE_API_KEY"


def ner_with_api_key(api_key: str, **settings: Any):
    """``hf_ner`` built only when given the real key (masking a secret must not change what the code
    receives); then, like a careless library, it logs and prints the key it was given."""
    if api_key != os.environ.get(KEY_ENV):
        raise ValueError(f"component.api_key is not the value of ${KEY_ENV}")
    logging.getLogger("private_service").warning("connecting with key %s", api_key)
    print(f"private service key: {api_key}", flush=True)
    return hf_ner(**settings)
