"""What every reader shares: `CorpusError`, the `LoadReport` of a read, the `Corpus` it returns,
and small file helpers (atomic writes, file names for messages, policy checks).
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medkit_exp.core.document import TextDocument
from medkit_exp.errors import MedkitExpError

OVERLAP_POLICIES = ("error", "keep_longest", "keep_first", "keep")
DATA_HINT = "set data.root (or the MEDKIT_EXP_DATA environment variable) to the folder holding your corpus"
MAX_WARNINGS = 50  # warnings kept verbatim in a report; the rest are only counted


class CorpusError(MedkitExpError, ValueError):
    """A corpus file cannot be read as asked.

    The message is one line: the file (and line number where there is one), what is wrong,
    and how to fix it, e.g. ``train/123.ann line 4: span 10-20 text 'foo' does not match ...``.
    """


def where(file: str, line: int | None = None) -> str:
    """Location prefix of an error message: ``"train/1.ann line 4"`` or ``"train/1.ann"``."""
    return f"{file} line {line}" if line is not None else file


def display_name(path: Path, root: Path | None = None) -> str:
    """Short name of ``path`` for messages: relative to ``root``'s parent (``train/1.ann``)."""
    if root is not None:
        try:
            return str(Path(root.name) / path.relative_to(root))
        except ValueError:
            pass
    return f"{path.parent.name}/{path.name}" if path.parent.name else path.name


def read_text_file(path: Path, name: str, encoding: str = "utf-8") -> str:
    """A file's text, decoded without newline translation (character offsets stay exact)."""
    data = path.read_bytes()
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise CorpusError(
            f"{name}: not valid {encoding} (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            f"re-encode the file as UTF-8 or pass encoding='latin-1' (or the file's encoding)"
        ) from None
    except LookupError:
        raise CorpusError(f"{name}: unknown encoding {encoding!r}; pass a Python codec name such as 'utf-8'") from None


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder, then rename.

    Readers never see a half-written file; newlines are written as they are (no translation).
    """
    path = Path(path)
    # mkstemp creates the file private (0600): give it the mode an ordinary write would have.
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(text.encode(encoding))
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    """Raise `ValueError` when ``value`` is not one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not supported; use one of {', '.join(map(repr, choices))}")


def require_folder(path: Path, what: str = "corpus folder") -> Path:
    """``path`` as a `Path` if it is an existing folder, else a `CorpusError` naming it."""
    path = Path(path)
    if not path.exists():
        raise CorpusError(f"{path}: {what} does not exist; {DATA_HINT}")
    if not path.is_dir():
        raise CorpusError(f"{path}: is a file, not a {what}; pass the folder that holds the files")
    return path


@dataclass
class LoadReport:
    """What a reader did: counts of what it kept, dropped and ignored, and its warnings.

    ``entities`` counts kept entities per (mapped) label; ``dropped_labels`` counts entities
    dropped by a label map (per original label); ``dropped_overlaps`` counts entities dropped
    by an overlap policy (per label); ``ignored_lines`` counts lines a reader skips on purpose
    (BRAT ``#`` notes, ``R``/``E``/``*`` lines, attributes of dropped entities...).
    """

    source: str = ""
    format: str = ""
    documents: int = 0
    unannotated_documents: int = 0
    entities: Counter = field(default_factory=Counter)
    attributes: int = 0
    normalizations: int = 0
    dropped_labels: Counter = field(default_factory=Counter)
    dropped_overlaps: Counter = field(default_factory=Counter)
    ignored_lines: Counter = field(default_factory=Counter)
    warnings: list[str] = field(default_factory=list)
    warning_count: int = 0
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def total_entities(self) -> int:
        return sum(self.entities.values())

    @property
    def total_dropped(self) -> int:
        return sum(self.dropped_labels.values()) + sum(self.dropped_overlaps.values())

    def warn(self, message: str) -> None:
        """Record a warning; only the first `MAX_WARNINGS` are kept verbatim, all are counted."""
        self.warning_count += 1
        if len(self.warnings) < MAX_WARNINGS:
            self.warnings.append(message)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (sorted label counts), ready for JSON or experiment tracking."""
        return {
            "source": self.source,
            "format": self.format,
            "documents": self.documents,
            "unannotated_documents": self.unannotated_documents,
            "entities": self.total_entities,
            "entities_per_label": dict(sorted(self.entities.items())),
            "attributes": self.attributes,
            "normalizations": self.normalizations,
            "dropped_labels": dict(sorted(self.dropped_labels.items())),
            "dropped_overlaps": dict(sorted(self.dropped_overlaps.items())),
            "ignored_lines": dict(sorted(self.ignored_lines.items())),
            "warning_count": self.warning_count,
            "warnings": list(self.warnings),
            **({"details": dict(self.details)} if self.details else {}),
        }

    def describe(self) -> str:
        """One-line human summary, e.g. for a log."""
        labels = ", ".join(f"{k} {v:,}" for k, v in sorted(self.entities.items())) or "none"
        parts = [f"{self.source}: {self.documents:,} documents, {self.total_entities:,} entities ({labels})"]
        if self.unannotated_documents:
            parts.append(f"{self.unannotated_documents:,} without annotations")
        if self.dropped_labels:
            parts.append(f"{sum(self.dropped_labels.values()):,} dropped by the label map")
        if self.dropped_overlaps:
            parts.append(f"{sum(self.dropped_overlaps.values()):,} dropped as overlapping")
        if self.ignored_lines:
            parts.append(f"{sum(self.ignored_lines.values()):,} lines ignored")
        if self.warning_count:
            parts.append(f"{self.warning_count:,} warnings")
        return "; ".join(parts)


@dataclass
class Corpus:
    """Documents read from one source, with the `LoadReport` of the read.

    Iterating, ``len`` and indexing go to ``documents``.
    """

    documents: list[TextDocument]
    report: LoadReport

    def __iter__(self) -> Iterator[TextDocument]:
        return iter(self.documents)

    def __len__(self) -> int:
        return len(self.documents)

    def __getitem__(self, index: int) -> TextDocument:
        return self.documents[index]


def normalise_labels(labels: Iterable[str] | None) -> set[str] | None:
    """The allowed labels as a set (a single string is one label, not its characters)."""
    if labels is None:
        return None
    return {labels} if isinstance(labels, str) else set(labels)


def normalise_label_map(label_map: Mapping[str, str | None] | None) -> dict[str, str | None]:
    """Validate a label map: keys and values must be strings (a value of None or "" drops the label)."""
    if label_map is None:
        return {}
    if not isinstance(label_map, Mapping):
        raise ValueError(f"label_map must be a mapping of label -> new label, got {type(label_map).__name__}")
    out: dict[str, str | None] = {}
    for key, value in label_map.items():
        if value is not None and not isinstance(value, str):
            raise ValueError(f"label_map[{key!r}] must be a label string, None or '' (drop), got {value!r}")
        out[str(key)] = value or None
    return out
