"""The cache folder of downloaded models: one entry per model, filled once, safe for concurrent jobs.

An entry is the HF model folder itself (``config.json`` at its top). It is downloaded into a
temporary folder inside the cache, then renamed into place (atomic on one file system) under a
file lock, so a job never sees half an entry and two jobs never download the same model twice.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from medkit_exp.errors import UserError

CACHE_ENV = "MEDKIT_EXP_MODEL_CACHE"
LOCK_TIMEOUT_S = 1800  # another job downloading a large model holds the lock this long at most
CONFIG_FILE = "config.json"


def cache_root() -> Path:
    """``$MEDKIT_EXP_MODEL_CACHE``, else ``~/.cache/medkit_exp/models``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "medkit_exp" / "models").expanduser()


def entry_name(label: str, key: Sequence[str]) -> str:
    """A folder name readable by a person (``label``, made file-safe) and unique to ``key``."""
    digest = hashlib.sha256("\0".join(key).encode()).hexdigest()[:16]
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("._")[:80]
    return f"{safe}-{digest}"


def find_model_folder(root: Path) -> Path | None:
    """``root`` if it is a HF model folder, else the one folder under it that is one; None when
    there is none. Several raise `UserError` (the caller names the URI)."""
    if (root / CONFIG_FILE).is_file():
        return root
    found = sorted(p.parent for p in root.rglob(CONFIG_FILE) if p.is_file())
    outermost = [p for p in found if not any(q != p and q in p.parents for q in found)]
    if len(outermost) > 1:
        names = ", ".join(p.relative_to(root).as_posix() for p in outermost)
        raise UserError(f"it holds several model folders ({names}); name one of them in the URI's path")
    return outermost[0] if outermost else None


def cached_model(label: str, key: Sequence[str], download: Callable[[Path], Path]) -> tuple[Path, bool]:
    """``(the entry's folder, whether it was downloaded now)``.

    ``download(folder)`` fills an empty temporary ``folder`` and returns the HF model folder
    inside it; it runs at most once per entry, under the entry's lock.
    """
    from filelock import FileLock

    root = cache_root()
    entry = root / entry_name(label, key)
    if entry.is_dir():  # renamed into place whole: present means complete
        return entry, False
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / f".{entry.name}.lock"), timeout=LOCK_TIMEOUT_S):
        if entry.is_dir():  # another job downloaded it while this one waited
            return entry, False
        scratch = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", suffix=".tmp", dir=root))
        try:
            os.replace(download(scratch), entry)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return entry, True
