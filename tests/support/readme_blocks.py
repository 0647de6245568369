"""The commands and code blocks of README.md and of the pages of docs/, as tests read them:
each test runs the documentation's own text.

A shell line keeps the folder of a ``cd`` and the variables of an ``export`` written before
it in its block; ``\\``-continued lines are joined and ``  # comments`` cut.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

REPO = next(folder for folder in Path(__file__).resolve().parents if (folder / "pyproject.toml").is_file())
README_PATH = REPO / "README.md"


def readme() -> str:
    return README_PATH.read_text(encoding="utf-8")


def doc_paths() -> list[Path]:
    """README.md, then every page of docs/."""
    return [README_PATH, *sorted((REPO / "docs").glob("*.md"))]


def documentation() -> list[str]:
    """The text of README.md and of each docs page, in `doc_paths` order."""
    return [path.read_text(encoding="utf-8") for path in doc_paths()]


@dataclass(frozen=True)
class ShellLine:
    """One command of a ``bash`` block, with the folder and variables the lines before it set."""

    text: str
    cwd: str | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def args(self) -> list[str]:
        return shlex.split(self.text)


def shell_lines() -> list[ShellLine]:
    """Every command of the ``bash`` blocks of README and docs (``cd`` and ``export`` lines are not
    commands)."""
    lines = []
    blocks = [block for text in documentation() for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S)]
    for block in blocks:
        cwd, env = None, {}
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip() if not line.lstrip().startswith("#") else ""
            if not line:
                continue
            if line.startswith("cd "):
                cwd = line[3:].strip()
            elif line.startswith("export "):
                for assignment in shlex.split(line)[1:]:
                    name, _, value = assignment.partition("=")
                    env[name] = value
            else:
                lines.append(ShellLine(" ".join(line.split()) if "'" not in line and '"' not in line else line,
                                       cwd, dict(env)))
    return lines


def inline_commands(prefix: str) -> list[str]:
    """Commands quoted in the prose of README and docs (`` `python -m medkit_exp --help` ``) that
    start with ``prefix``."""
    return sorted({c for text in documentation() for c in re.findall(r"(?<!`)`([^`\n]+)`(?!`)", text)
                   if c.startswith(prefix)})


def command(prefix: str) -> ShellLine:
    """The one shell line of README and docs starting with ``prefix``."""
    found = [line for line in shell_lines() if line.text.startswith(prefix)]
    assert len(found) == 1, f"README and docs have {len(found)} commands starting with {prefix!r}: " \
                            f"{[f.text for f in found]}"
    return found[0]


def in_this_environment(args: list[str]) -> list[str]:
    """``args`` with their program (``mlflow``, ``torchrun``) taken from this interpreter's environment,
    as an activated one would find it, else run as ``python -m <program>``."""
    import sys

    script = Path(sys.executable).parent / args[0]
    if script.exists():
        return [str(script), *args[1:]]
    module = {"torchrun": "torch.distributed.run"}.get(args[0], args[0])
    return [sys.executable, "-m", module, *args[1:]]


def python_blocks() -> list[str]:
    """The code of every ``python`` block of README and docs."""
    return [block for text in documentation() for block in re.findall(r"```python\n(.*?)```", text, flags=re.S)]


def python_block(containing: str) -> str:
    """The one ``python`` block of README and docs that contains ``containing``."""
    found = [block for block in python_blocks() if containing in block]
    assert len(found) == 1, f"README and docs have {len(found)} python blocks containing {containing!r}"
    return found[0]
