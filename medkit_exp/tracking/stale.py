"""Runs left RUNNING by a process that died (kill -9, power loss) are marked FAILED.

Every run records the host and process id that runs it (tags ``process.host`` and
``process.pid``). Before a new run starts, the runs of the same experiment that claim to be
RUNNING on this host but whose process is gone are ended as FAILED with a tag saying why,
so the UI never shows a dead run as running (a resume reopens it). They are also tagged
``process.died``, which tells a resumed sweep that the job was interrupted, not failed.
"""

from __future__ import annotations

import os
import socket

HOST_TAG, PID_TAG = "process.host", "process.pid"
DIED_TAG = "process.died"  # "true" on a run this module ended FAILED because its process was gone


def process_tags() -> dict[str, str]:
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}


def alive(pid: int) -> bool:
    """Whether process ``pid`` of this host exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def fail_dead_runs(client, experiment_id: str) -> list[str]:
    """End as FAILED the RUNNING runs of this host whose process no longer exists; return their ids."""
    host = socket.gethostname()
    running_here = f"attributes.status = 'RUNNING' and tags.`{HOST_TAG}` = '{host}'"
    runs = client.search_runs([experiment_id], filter_string=running_here)
    ended = []
    for run in runs:
        pid = run.data.tags.get(PID_TAG, "")
        if pid.isdigit() and int(pid) != os.getpid() and not alive(int(pid)):
            client.set_tag(run.info.run_id, "medkit.error", f"process {pid} on {host} died without ending the run")
            client.set_tag(run.info.run_id, DIED_TAG, "true")
            client.set_terminated(run.info.run_id, status="FAILED")
            ended.append(run.info.run_id)
    return ended
