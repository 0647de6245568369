"""``data=text``: unlabelled text for masked-language-model training.

A split is a folder of ``.txt`` files (one document each, its id the file's stem, read in name
order, hidden files skipped) or a text file holding one document per non-empty line (ids
``<stem>-<line number>``). The documents carry no annotation.
"""

from __future__ import annotations

from pathlib import Path

from medkit_exp.core import TextDocument
from medkit_exp.errors import UserError
from medkit_exp.io.splits import SPLITS, CorpusSplits, data_root


def read_texts(path: str | Path, encoding: str = "utf-8") -> list[TextDocument]:
    """The documents of one split: a folder of ``.txt`` files, or a file with one document per line."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.glob("*.txt") if not p.name.startswith("."))
        return [TextDocument(p.read_text(encoding=encoding), id=p.stem, metadata={"path": str(p)}) for p in files]
    lines = path.read_text(encoding=encoding).splitlines()
    return [TextDocument(line, id=f"{path.stem}-{number:06d}", metadata={"path": str(path), "line": number})
            for number, line in enumerate(lines, start=1) if line.strip()]


def load_texts(root: str | None = None, name: str = "text", train: str = "train", dev: str | None = "dev",
               test: str | None = None, max_docs: int | None = None, encoding: str = "utf-8") -> CorpusSplits:
    """Read ``root/<train>``, ``root/<dev>`` and, when given, ``root/<test>`` (see the module docstring)."""
    folder = data_root(name, root)
    splits = {}
    for split, relative in zip(SPLITS, (train, dev, test), strict=True):
        if relative is None:
            continue
        path = folder / relative
        if not path.exists():
            raise UserError(f"split {path} does not exist; check data.root and data.{split} (a folder of .txt "
                            "files or a file with one document per line)")
        documents = read_texts(path, encoding)
        splits[split] = documents[:max_docs] if max_docs else documents
        if split != "test" and not any(doc.text.strip() for doc in splits[split]):
            raise UserError(f"data={name}: the {split} split {path} holds no text; give .txt files or non-empty lines")
    return CorpusSplits(name, splits, source=str(folder.resolve()))
