"""Send to MLflow what a run kept on disk while its tracking server was down.

    python -m medkit_exp.send_unsent outputs/2026-12-03/10-00-00          # the run's folder
    python -m medkit_exp.send_unsent FOLDER --tracking-uri http://host:5000

The run's folder holds ``mlflow_unsent.json`` (see `medkit_exp.tracking.spool`): its metric
points, tags, small artifacts, checkpoint uploads and, if the run could not record it, how it
ended. The server is the one the run used (its URI as recorded, credentials redacted), else
``--tracking-uri`` or ``$MLFLOW_TRACKING_URI``; credentials come from the URI you give or from
``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``. Once everything is sent the file is
renamed ``mlflow_unsent.json.sent``; points the run already holds are not logged twice.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from medkit_exp.errors import UserError, one_line, run_command


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m medkit_exp.send_unsent", description=__doc__.split("\n\n")[0])
    parser.add_argument("path", help="the run's folder (holding mlflow_unsent.json) or the file itself")
    parser.add_argument("--tracking-uri", default=None,
                        help="server to send to (default: $MLFLOW_TRACKING_URI, else the URI the run used)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    # A missing or foreign spool file (read_spool's FileNotFoundError/ValueError) is bad input too.
    return run_command("medkit_exp.send_unsent", lambda: _main(parse_args(argv)),
                       also_user_errors=(FileNotFoundError, ValueError))


def _main(args: argparse.Namespace) -> int:
    from mlflow import MlflowClient

    from medkit_exp.tracking.secrets import redact_text
    from medkit_exp.tracking.spool import SENT_SUFFIX, SPOOL_FILE, read_spool, send_spool
    from medkit_exp.tracking.store import TrackingUnavailableError, check_reachable

    path = Path(args.path)
    file = path / SPOOL_FILE if path.is_dir() else path
    payload = read_spool(file)
    uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or payload.get("tracking_uri") or ""
    if "***" in uri:  # the recorded URI had credentials, redacted: keep the address, take them from the env
        scheme, _, rest = uri.partition("://")
        uri = f"{scheme}://{rest.rsplit('@', 1)[-1]}"
    if not uri:
        raise UserError(f"{file}: no tracking URI recorded; give --tracking-uri")
    if uri.startswith(("http://", "https://")):
        try:
            check_reachable(uri, 5.0)
        except TrackingUnavailableError as exc:
            raise UserError(f"{redact_text(uri)} still unreachable ({one_line(exc)}); try again when it is back, "
                            "or give --tracking-uri") from exc
    try:
        sent = send_spool(payload, MlflowClient(uri))
    except Exception as exc:
        if type(exc).__name__ in ("MlflowException", "RestException"):
            raise UserError(f"run {payload['run_id']} on {redact_text(uri)}: {redact_text(one_line(exc))}") from exc
        raise
    file.rename(file.with_name(file.name + SENT_SUFFIX))
    print(f"run {payload['run_id']}: sent {sent['metrics']} metric point(s) ({sent['metrics_already_there']} "
          f"already there), {sent['tags']} tag(s), {sent['artifacts']} artifact file(s), {sent['uploads']} "
          f"folder(s)" + (f", ended {payload['status']}" if sent["ended"] else "") + f" to {redact_text(uri)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
