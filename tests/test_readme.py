"""Every command and code block of README.md and of the docs/ pages, checked as they are written.

- ``python -m medkit_exp ...`` lines are composed with ``--cfg all`` (the ``--cfg job`` config
  with Hydra's own) and each override is found with its value (a sweep job by job, until every
  value was seen; an Optuna interval by its two ends); those that are quick also run for real,
  here or in another test.
- The default run, the examples block, the ``predict`` lines, ``mlflow ui`` and the Python
  blocks run here, with the tiny model where README trains for minutes.
- ``RUN_ELSEWHERE`` names the tests that run the other lines from the documentation's own text
  (``readme_blocks.command``), so that no line is run twice.
- Every docs page is reached by links from README, and every relative link leads to a file (and
  heading) that exists.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import shlex
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml
from conftest import REPO_ROOT, SHARED_DATA, copy_examples
from support.readme_blocks import (
    ShellLine,
    command,
    doc_paths,
    in_this_environment,
    inline_commands,
    python_block,
    python_blocks,
    readme,
    shell_lines,
)
from support.servers import free_port, serving
from test_cli import cli_env, client_for, run_cli

# Lines of README and docs run for real by another test, which reads them with readme_blocks.command(<key>).
RUN_ELSEWHERE = {
    "python -m medkit_exp tracking.register_as=": "test_serving.py::registered_run",
    "mlflow models serve ": "test_serving.py::served_model",
    "curl -s http://127.0.0.1:5001/invocations": "test_serving.py::test_the_served_model_answers_invocations",
    "mlflow server --backend-store-uri": "test_tracking_server.py::mlflow_server",
    "torchrun ": "test_distributed.py::test_two_gloo_processes_match_one_process_over_the_same_global_batch",
    "python -m medkit_exp.compare <run id A> <run id B> --json":
        "test_compare.py::test_end_to_end_two_tiny_runs_compared_by_run_ids_and_by_folders",
    "python -m medkit_exp trainer.resume_from=last":
        "test_cli.py::test_ctrl_c_then_resume_last_continues_the_same_mlflow_run",
    "python -m medkit_exp.predict --input":
        "test_model_uris.py::test_predict_reads_a_registered_model_and_a_bad_uri_exits_2",
}

# Lines of README and docs another test exercises with its own arguments, not their text.
RUN_ELSEWHERE_NOT_VERBATIM = {
    "mlflow server --app-name basic-auth": "test_tracking_auth.py::auth_server",
    "curl -u admin:": "test_tracking_auth.py::auth_server (users/create)",
    "python scripts/ui_screenshots.py": "test_ui_browser.py (the script's functions: its sweep, server and pages)",
    "python scripts/kill_resume_soak.py":
        "test_cli.py::test_kill_9_then_resume_equals_an_uninterrupted_run (one round)",
    "python -m medkit_exp.compare": "test_compare.py (run ids, folders, sweep ranks and --config, refusals)",
    "python -m medkit_exp.suspects": "test_suspects.py (a multirun folder, a .jsonl, a CV parent run id, refusals)",
    "python -m medkit_exp.send_unsent ":
        "test_tracking_outage.py::test_a_server_that_never_comes_back_leaves_a_command_that_sends_everything "
        "(the command the run printed)",
}

# Lines with nothing to run in a test.
NOTHING_TO_RUN = {
    "python -m venv .venv && source .venv/bin/activate": "creates the environment the suite runs in",
    "read -s MLFLOW_TRACKING_PASSWORD": "an interactive shell builtin",
}

PYTHON_BLOCKS = {  # a distinctive line of each python block of README and docs: the test that runs it
    "matcher.run([doc])": "test_the_predict_python_block_prints_the_checkpoints_entities",
    "classifier.annotate(docs)": "test_the_classifier_python_block_types_every_entity",
    "history = trainer.train()": "test_the_training_python_block_trains_and_checkpoints",
    'mlflow.pyfunc.load_model("models:/': "test_serving.py::test_the_pyfunc_python_block_prints_the_entities",
    "counts.per_label_f1()": "test_predictions.py::test_the_evaluation_python_block_recomputes_scores",
    "def item_values": "test_item_values.py::test_the_docs_metrics_computer_gives_items_whose_mean_is_its_score",
}


def is_app(text: str) -> bool:
    return text == "python -m medkit_exp" or text.startswith("python -m medkit_exp ")


def how_checked(text: str) -> str | None:
    """Which test checks the documentation's line ``text``; None for a line no test checks."""
    for table in (RUN_ELSEWHERE, RUN_ELSEWHERE_NOT_VERBATIM, NOTHING_TO_RUN):
        for prefix, where in table.items():
            if text.startswith(prefix):
                return where
    if is_app(text):
        return "test_every_app_command_composes_with_its_overrides"
    if text.startswith("python bench/"):  # a benchmark takes minutes: its smoke test runs it on a tiny input
        script = text.split()[1].removeprefix("bench/")
        source = (REPO_ROOT / "tests" / "test_bench_smoke.py").read_text(encoding="utf-8")
        return "test_bench_smoke.py" if f'"{script}"' in source else None
    for prefix, where in (("python -m medkit_exp.predict ", "test_the_predict_lines_run_on_the_default_run"),
                          ("mlflow ui ", "test_mlflow_ui_as_readme_writes_it_serves_the_runs"),
                          ("pip install ", "test_the_install_lines_match_this_environment"),
                          ("python -m pytest ", "test_the_test_command_runs_with_two_workers")):
        if text.startswith(prefix):
            return where
    return None


def app_lines() -> list[ShellLine]:
    """The ``python -m medkit_exp`` lines of README and docs, from the code blocks and the prose."""
    lines = [line for line in shell_lines() if is_app(line.text)]
    known = {line.text for line in lines}
    lines += [ShellLine(text) for text in inline_commands("python -m medkit_exp") if is_app(text) and text not in known]
    return lines


def with_port(args: list[str], port: int) -> list[str]:
    """README's ``--port N`` replaced by a free port (5000 may be taken)."""
    index = args.index("--port")
    return [*args[:index + 1], str(port), *args[index + 2:]]


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as answer:
        return json.loads(answer.read())


# ---------------------------------------------------------------------------- every line has its check
def calls(source: str, function: str, argument: str) -> bool:
    """Whether ``source`` calls ``function`` with the string ``argument`` (either quotes)."""
    return any(f"{function}({quote}{argument}{quote})" in source for quote in "'\"")


# The commands of README and docs when the reference moved from README to docs/ (48 lines of code
# blocks, 19 commands in the prose): fewer means a command was lost, and lowering it is a decision.
CHECKED_COMMANDS_AT_LEAST = 67


def test_every_readme_command_is_checked():
    lines = [line.text for line in shell_lines()]
    lines += [c for prefix in ("python -m medkit_exp", "python bench/", "python scripts/")
              for c in inline_commands(prefix)]
    assert len(lines) >= CHECKED_COMMANDS_AT_LEAST, len(lines)
    unchecked = [text for text in lines if how_checked(text) is None]
    assert not unchecked, f"README and docs lines no test checks (add them to tests/test_readme.py): {unchecked}"
    for prefix, where in RUN_ELSEWHERE.items():
        file, name = where.split("::")
        source = (REPO_ROOT / "tests" / file).read_text(encoding="utf-8")
        assert f"def {name}(" in source, where
        assert calls(source, "command", prefix), f"{file} does not run README's {prefix!r} line"
        assert any(text.startswith(prefix) for text in lines), f"README and docs have no {prefix!r} line any more"
    for block in python_blocks():
        keys = [key for key in PYTHON_BLOCKS if key in block]
        assert len(keys) == 1, f"a python block no test runs (add it to PYTHON_BLOCKS): {block[:200]}"
    for key, where in PYTHON_BLOCKS.items():
        file, _, name = where.rpartition("::")
        source = (REPO_ROOT / "tests" / (file or "test_readme.py")).read_text(encoding="utf-8")
        assert f"def {name}(" in source and calls(source, "python_block", key), where


# ---------------------------------------------------------------------------- composition
def split_args(args: list[str]) -> tuple[list[str], list[str]]:
    """(Hydra's flags with their values, the overrides) of a ``python -m medkit_exp`` command."""
    flags, overrides, i = [], [], 0
    while i < len(args):
        if args[i] in ("--config-dir", "-cd", "--cfg", "-c", "--package", "-p"):
            flags += args[i:i + 2]
            i += 2
        elif args[i].startswith("-"):
            flags.append(args[i])
            i += 1
        else:
            overrides.append(args[i])
            i += 1
    return flags, overrides


def sweep_values(override) -> list[str]:
    """The values a job of the sweep can get: each choice or range value; an interval's two ends
    (what an Optuna search draws between)."""
    from hydra.core.override_parser.types import IntervalSweep

    value = override.value()
    if isinstance(value, IntervalSweep):
        ends = (value.start, value.end)
        return [str(int(end)) if "int" in (value.tags or set()) else str(end) for end in ends]
    return list(override.sweep_string_iterator()) if override.is_sweep_override() else [
        override.get_value_element_as_str()]


def jobs(overrides: list[str]) -> list[list[str]]:
    """The jobs of a sweep as override lists, enough of them for each swept value to appear once."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    values = [sweep_values(o) for o in parsed]
    count = max(len(v) for v in values) if values else 1
    return [[f"{o.get_key_element()}={v[i % len(v)]}" for o, v in zip(parsed, values, strict=True)]
            for i in range(count)]


def at(config: dict, dotted: str):
    for part in dotted.split("."):
        assert isinstance(config, dict) and part in config, f"{dotted} is not in the composed config"
        config = config[part]
    return config


def compose(flags: list[str], overrides: list[str], cwd: Path) -> dict:
    """The whole composed config (``--cfg all``: the job's, and Hydra's under ``hydra``)."""
    result = run_cli([*flags, *overrides, "--cfg", "all"], cwd, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    return yaml.safe_load(result.stdout)


def check_overrides(config: dict, overrides: list[str]) -> None:
    """Each override is in ``config``: a group option in Hydra's choices, a value at its key."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    choices = config["hydra"]["runtime"]["choices"]
    for override in OverridesParser.create().parse_overrides(overrides):
        key, expected = override.key_or_group, override.value()
        if key in choices:
            assert choices[key] == expected, f"{key}: composed {choices[key]}, asked {expected}"
        else:
            got = at(config, key)
            assert got == (pytest.approx(expected) if isinstance(expected, float) else expected), (key, got, expected)


def line_id(line: ShellLine) -> str:
    return line.text[len("python -m medkit_exp"):].strip() or "default"


@pytest.mark.parametrize("line", app_lines(), ids=line_id)
def test_every_app_command_composes_with_its_overrides(line):
    """Composed with each of its overrides in place; a ``--cfg``/``--help`` line also runs as written."""
    cwd = REPO_ROOT / line.cwd if line.cwd else REPO_ROOT
    flags, overrides = split_args(line.args[3:])
    composing = [f for f, prev in zip(flags, [None, *flags], strict=False) if "--config-dir" in (f, prev)]
    for job in jobs(overrides):
        check_overrides(compose(composing, job, cwd), job)

    shown = {"--cfg", "--help"} & set(flags)
    if shown:  # quick and harmless: run exactly as README writes it
        result = run_cli(line.args[3:], cwd, timeout=60)
        assert result.returncode == 0, result.stderr[-2000:]
        if "--help" in shown:
            assert "== Configuration groups ==" in result.stdout and "trainer.resume_from" in result.stdout
        else:
            whole = compose(composing, overrides, cwd)
            printed = yaml.safe_load(result.stdout)
            part = flags[flags.index("--cfg") + 1]
            expected = whole if part == "all" else {
                k: v for k, v in whole.items() if (k == "hydra") == (part == "hydra")}
            if "-p" in flags:
                expected = at(whole, flags[flags.index("-p") + 1])
            assert printed == expected


def help_groups(stdout: str) -> dict[str, list[str]]:
    """The ``group: option, option`` lines of the ``--help`` section that lists the config groups."""
    section = stdout.split("== Configuration groups ==", 1)[1].split("== Config ==", 1)[0]
    return {group: options.split(", ") for group, options in re.findall(r"^(\S+): (.+)$", section, flags=re.M)}


def test_help_lists_the_groups_and_only_the_options_users_choose(tmp_path):
    """`--help` lists each folder of conf/ with its YAML files as options, and not the config schemas
    (``base_trainer``...) that the YAML files build on."""
    result = run_cli(["--help"], tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    conf = REPO_ROOT / "conf"
    expected = {folder.name: sorted(path.stem for path in folder.glob("*.yaml"))
                for folder in conf.iterdir() if folder.is_dir() and folder.name not in ("hydra", "__pycache__")}
    assert {"trainer", "component", "data", "tracking", "experiment"} <= set(expected)
    listed = help_groups(result.stdout)
    assert not [option for options in listed.values() for option in options if option.startswith("base_")], listed
    assert listed == expected


def test_every_setting_of_the_app_is_in_the_configuration_page(tmp_path):
    """Each key of the typed groups (``trainer``, ``tracking``, ``callbacks``, ``evaluation``, ``cv``) and of the top
    level, as the default config composes them, has its row in docs/configuration.md."""
    result = run_cli(["--cfg", "job"], tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    config = yaml.safe_load(result.stdout)
    keys = [f"{group}.{key}" for group in ("trainer", "tracking", "callbacks", "evaluation", "cv")
            for key in config[group]]
    keys += [key for key, value in config.items() if not isinstance(value, dict)]
    assert len(keys) > 30
    page = (REPO_ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert [key for key in keys if f"| `{key}` |" not in page] == []


def test_the_typo_example_prints_readmes_error_line(tmp_path):
    (example,) = re.findall(r"```\n(\$ .*?)```", readme(), flags=re.S)
    typed, *expected = example.strip().splitlines()
    result = run_cli(shlex.split(typed.removeprefix("$ "))[3:], tmp_path, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == expected
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "outputs").exists()


# ---------------------------------------------------------------------------- links between the pages
def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors of a page's headings (a repeated heading gets ``-1``, ``-2``... as on GitHub)."""
    seen: dict[str, int] = {}
    found = set()
    for heading in re.findall(r"^#{1,6} (.+)$", without_code(path.read_text(encoding="utf-8")), flags=re.M):
        base = slug(heading)
        found.add(f"{base}-{seen[base]}" if base in seen else base)
        seen[base] = seen.get(base, 0) + 1
    return found


def without_code(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def relative_links(path: Path) -> list[str]:
    """The targets of a page's links and images that point into the repository."""
    targets = re.findall(r"!?\[[^\]]*\]\(([^)\s]+)\)", without_code(path.read_text(encoding="utf-8")))
    return [t for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:", t)]


def test_every_relative_link_leads_to_a_file_and_heading_that_exist():
    dead = []
    for page in doc_paths():
        for target in relative_links(page):
            file, _, anchor = target.partition("#")
            linked = (page.parent / file).resolve() if file else page
            if not linked.exists():
                dead.append(f"{page.relative_to(REPO_ROOT)}: {target} (no such file)")
            elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                dead.append(f"{page.relative_to(REPO_ROOT)}: {target} (no such heading)")
    assert not dead, dead


def test_every_docs_page_is_reached_from_readme():
    pages = set(doc_paths())
    reached, todo = set(), [REPO_ROOT / "README.md"]
    while todo:
        page = todo.pop()
        if page in reached:
            continue
        reached.add(page)
        todo += [linked for target in relative_links(page)
                 if (linked := (page.parent / target.partition("#")[0]).resolve()) in pages]
    assert len(pages) > 5
    assert sorted(str(p.relative_to(REPO_ROOT)) for p in pages - reached) == []


# ---------------------------------------------------------------------------- install and test commands
def unmet(requirement: str) -> list[str]:
    """What of ``requirement`` (with its extras) this environment does not satisfy; the project's
    own extras are read from pyproject.toml (what `pip install -e` installs now)."""
    import tomllib
    from packaging.requirements import Requirement

    wanted = Requirement(requirement)
    if wanted.marker is not None and not wanted.marker.evaluate():
        return []
    try:
        installed = importlib.metadata.version(wanted.name)
    except importlib.metadata.PackageNotFoundError:
        return [f"{wanted.name} is not installed"]
    problems = [] if wanted.specifier.contains(installed.split("+")[0], prereleases=True) else [
        f"{wanted.name} {installed} does not satisfy {wanted.specifier}"]
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    for extra in wanted.extras:
        if wanted.name == project["name"]:
            lines = project["dependencies"] + project["optional-dependencies"][extra]
        else:
            lines = [line for line in importlib.metadata.requires(wanted.name) or []
                     if Requirement(line).marker is not None and Requirement(line).marker.evaluate({"extra": extra})]
        for line in lines:
            needed = Requirement(line)
            problems += [f"[{extra}] {p}" for p in unmet(f"{needed.name}{needed.specifier}")]
    return problems


def test_the_install_lines_match_this_environment():
    """Each `pip install` of README and docs (torch pinned, the project with its dev extra, mlflow[auth]) is what
    the suite runs with."""
    installs = [part.strip() for line in shell_lines() for part in line.text.split("&&")
                if part.strip().startswith("pip install ")]
    assert len(installs) >= 2
    for install in installs:
        for arg in shlex.split(install)[2:]:
            if arg == "-e":
                continue
            requirement = arg.replace(".[", "medkit_exp[") if arg.startswith(".[") else arg
            assert not unmet(requirement), (install, unmet(requirement))


def test_the_test_command_runs_with_two_workers(tmp_path):
    """README's test command, on one quick file (the whole suite would run inside itself)."""
    args = command("python -m pytest").args
    isolated = ["-p", "no:cacheprovider", f"--basetemp={tmp_path / 'inner'}"]  # leaves the outer run's files alone
    result = subprocess.run([sys.executable, *args[1:], *isolated, "tests/test_ner_tagging.py"],
                            cwd=REPO_ROOT, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:]
    assert "bringing up nodes" in result.stdout and re.search(r"\b\d+ passed\b", result.stdout), result.stdout[-1000:]


# ---------------------------------------------------------------------------- the default run and what uses it
@pytest.fixture(scope="module")
def default_run(tmp_path_factory, mlflow_template_db) -> dict:
    """`python -m medkit_exp`, nothing else: the packaged MiniLM on the demo corpus, tracked."""
    folder = tmp_path_factory.mktemp("default-run")
    (folder / "mlruns").mkdir()
    shutil.copyfile(mlflow_template_db, folder / "mlruns" / "mlflow.db")
    (line,) = [line for line in shell_lines() if line.text == "python -m medkit_exp"]
    result = run_cli(line.args[3:], folder, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = result.stdout[result.stdout.index("== medkit_exp run summary =="):]
    return {"folder": folder, "summary": summary,
            "run_id": re.search(r"MLflow run\s+: (\w+)", summary).group(1),
            "checkpoint": Path(re.search(r"checkpoint\s+: (\S+)", summary).group(1))}


def test_the_default_run_as_readme_gives_it(default_run):
    summary, folder = default_run["summary"], default_run["folder"]
    test_f1 = float(re.search(r"test\s+: precision=\S+ recall=\S+ f1=([0-9.]+)", summary).group(1))
    assert test_f1 >= 0.8  # measured 0.933 with the defaults (5 epochs, lr 3e-4)
    ui = re.search(r"see it with\s+: (mlflow ui .*)", summary).group(1)
    assert f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}" in ui
    run = client_for(folder).get_run(default_run["run_id"])
    assert run.info.status == "FINISHED" and run.data.metrics["test_f1"] == pytest.approx(test_f1, abs=1e-4)
    # README's summary shows the real one's lines, in its order.
    shown = re.search(r"```\n(== medkit_exp run summary ==\n.*?)```", readme(), flags=re.S).group(1)
    keys = [line.split(" : ")[0].strip() for line in summary.splitlines()[1:] if " : " in line]
    readme_keys = [line.split(" : ")[0].strip() for line in shown.splitlines()[1:] if " : " in line]
    assert [key for key in keys if key in readme_keys] == readme_keys, (readme_keys, keys)


def test_mlflow_ui_as_readme_writes_it_serves_the_runs(default_run):
    """README's `mlflow ui` line, in the launch folder of a run: healthy, and it serves that run."""
    port = free_port()
    args = with_port(in_this_environment(command("mlflow ui ").args), port)
    url = f"http://127.0.0.1:{port}"
    env = {**cli_env(), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # README's advice: starts in 10 s, not 25 s
    with serving(args, f"{url}/health", default_run["folder"] / "ui.log", env=env, cwd=default_run["folder"]):
        run = get_json(f"{url}/ajax-api/2.0/mlflow/runs/get?run_id={default_run['run_id']}")["run"]
        files = get_json(f"{url}/ajax-api/2.0/mlflow/artifacts/list?run_id={default_run['run_id']}")["files"]
    assert run["info"]["status"] == "FINISHED"
    assert {"best_checkpoint", "config.yaml", "history.json"} <= {f["path"] for f in files}


def entities_of(checkpoint: Path, texts: list[str]) -> list[list[tuple]]:
    from medkit_exp.core import TextDocument
    from medkit_exp.text.ner import HFEntityMatcher

    found = HFEntityMatcher(model=checkpoint).predict([TextDocument(text=text) for text in texts])
    return [[(e.label, e.spans[0].start, e.spans[-1].end, e.text) for e in entities] for entities in found]


NOTES = ["The patient was started on metformin for type 2 diabetes.",
         "Chest X-ray showed pneumonia; amoxicillin was given after a blood test."]


def test_the_predict_lines_run_on_the_default_run(default_run, tmp_path):
    """Both `predict` lines: a checkpoint folder on .txt notes, then a run id on NCBI-disease BRAT files."""
    folder = default_run["folder"]
    by_model = command("python -m medkit_exp.predict --model").args
    model_at = by_model.index("--model") + 1
    by_model[model_at] = str(default_run["checkpoint"].relative_to(folder))  # README: outputs/<date>/<time>/...
    notes = folder / by_model[by_model.index("--input") + 1]
    notes.mkdir()
    for i, note in enumerate(NOTES):
        (notes / f"note{i}.txt").write_text(note, encoding="utf-8")
    result = run_cli(by_model[3:], folder, module="medkit_exp.predict")
    assert result.returncode == 0, result.stderr[-3000:]
    output = folder / by_model[by_model.index("--output") + 1]
    rows = [json.loads(line) for line in (output / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    got = [[(e["label"], e["spans"][0][0], e["spans"][-1][1], e["text"]) for e in row["entities"]] for row in rows]
    expected = entities_of(default_run["checkpoint"], NOTES)
    assert any(expected) and got == expected
    assert sorted(p.name for p in (output / "brat").iterdir()) == ["note0.ann", "note0.txt", "note1.ann", "note1.txt"]

    if not (SHARED_DATA / "ncbi-disease" / "test").is_dir():
        pytest.skip("NCBI-disease data not found")
    by_run = shlex.split(command("python -m medkit_exp.predict --run-id").text.replace("<mlflow run id>",
                                                                                    default_run["run_id"]))
    corpus = tmp_path / "ncbi-test"  # three documents of README's folder: the same format, a quick run
    corpus.mkdir()
    for text in sorted((SHARED_DATA / "ncbi-disease" / "test").glob("*.txt"))[:3]:
        shutil.copy(text, corpus)
        shutil.copy(text.with_suffix(".ann"), corpus)
    by_run[by_run.index("--input") + 1] = str(corpus)
    shutil.rmtree(output)
    result = run_cli(by_run[3:], folder, module="medkit_exp.predict")
    assert result.returncode == 0, result.stderr[-3000:]
    scores = json.loads((output / "scores.json").read_text(encoding="utf-8"))
    printed = re.search(r"scores: precision=([0-9.]+), recall=([0-9.]+), f1=([0-9.]+)", result.stdout).groups()
    assert [float(v) for v in printed] == [pytest.approx(scores[k], abs=1e-4) for k in ("precision", "recall", "f1")]
    # --label-map collapsed the four NCBI labels into Disease on the reference side.
    assert not [k for k in scores if k.startswith(("SpecificDisease", "DiseaseClass", "Modifier", "CompositeMention"))]
    assert any(k.startswith("Disease_") for k in scores), sorted(scores)
    logged = client_for(folder).get_run(default_run["run_id"]).data.metrics
    assert logged["predict_f1"] == pytest.approx(scores["f1"])


def run_python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=cli_env(), capture_output=True, text=True,
                          timeout=300)


def test_the_predict_python_block_prints_the_checkpoints_entities(default_run):
    code = python_block("matcher.run([doc])")
    code = re.sub(r'model="[^"]*"', f'model="{default_run["checkpoint"]}"', code)
    result = run_python(code, default_run["folder"])
    assert result.returncode == 0, result.stderr[-3000:]
    text = re.search(r'TextDocument\(text="([^"]*)"\)', code).group(1)
    (expected,) = entities_of(default_run["checkpoint"], [text])
    printed = [re.fullmatch(r"(\S+) \[.*\] (.+) (0\.\d+|1\.0)", line) for line in result.stdout.strip().splitlines()]
    assert all(printed), result.stdout
    assert [(m.group(1), m.group(2)) for m in printed] == [(label, text) for label, _, _, text in expected]
    assert expected, "the default model found nothing in README's sentence"


# ---------------------------------------------------------------------------- the other blocks
def test_the_examples_block_runs_as_written(tmp_path, mlflow_template_db):
    """README's `cd examples` block, line by line, in a copy of examples/ (a user's launch folder)."""
    lines = [line for line in shell_lines() if line.cwd == "examples"]
    assert len(lines) == 3
    launch = tmp_path / "examples"
    copy_examples(launch)
    (launch / "mlruns").mkdir()
    shutil.copyfile(mlflow_template_db, launch / "mlruns" / "mlflow.db")
    for line in lines:
        result = run_cli(line.args[3:], launch, timeout=300)
        assert result.returncode == 0, (line.text, result.stderr[-3000:])

    client = client_for(launch)
    runs = client.search_runs([client.get_experiment_by_name("medkit_exp").experiment_id], order_by=["start_time ASC"])
    assert [r.info.status for r in runs] == ["FINISHED"] * 5  # a run, a sweep's parent and 2 jobs, a run
    singles = [r for r in runs if not r.info.run_name.startswith("sweep-") and "mlflow.parentRunId" not in r.data.tags]
    assert [(r.data.params["trainer.lr"], r.data.params["scheduler._target_"]) for r in singles] == [
        ("0.1", "medkit_exp.training.schedulers.linear_warmup"), ("0.1", "torch.optim.lr_scheduler.StepLR")]
    assert all(r.data.params["component._target_"] == "my_regressor.MLPRegressor" and "test_mae" in r.data.metrics
               for r in singles)
    (parent,) = [r for r in runs if r.info.run_name.startswith("sweep-")]
    jobs_ = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.data.params["trainer.lr"] for r in jobs_) == ["0.05", "0.2"]
    best = min(jobs_, key=lambda r: r.data.metrics["eval_mae"])  # objective=eval_mae, minimised
    assert parent.data.tags["best.run_id"] == best.info.run_id


def test_the_classifier_python_block_types_every_entity(tiny_bert_dir, tmp_path):
    from medkit_exp.text.classification import HFSegmentClassifier

    labels = ["problem", "test", "treatment"]
    checkpoint = tmp_path / "classifier"  # untrained: the block's mechanics, not its quality
    HFSegmentClassifier.make_trainable(tiny_bert_dir, labels, attr_label="type", context="sentence").save(checkpoint)
    code = re.sub(r'model="[^"]*"', f'model="{checkpoint}"', python_block("classifier.annotate(docs)"))
    prelude = "from medkit_exp.io import load_demo_corpus\ndocs = load_demo_corpus()['test'][:3]\n"
    after = "\nprint('TYPED', sum(len(e.get_attrs('type')) for d in docs for e in d.anns.entities), " \
            "sum(len(d.anns.entities) for d in docs))\n"
    result = run_python(prelude + code + after, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    *printed, typed = result.stdout.strip().splitlines()
    from medkit_exp.io import load_demo_corpus

    first = load_demo_corpus()["test"][0]
    assert len(printed) == len(first.anns.entities) > 0
    for line, entity in zip(printed, first.anns.entities, strict=True):
        assert re.fullmatch(rf"{re.escape(entity.text)} ({'|'.join(labels)}) (0\.\d+|1\.0)", line), line
    _, written, entities = typed.split()
    assert written == entities != "0"  # one "type" attribute on every entity of every document


def test_the_training_python_block_trains_and_checkpoints(tiny_bert_dir, tmp_path):
    code = python_block("history = trainer.train()").replace('"path/to/hf-model"', f'"{tiny_bert_dir}"')
    assert str(tiny_bert_dir) in code
    after = "\nimport json\nprint('HISTORY', json.dumps(history))\n"
    result = run_python(code + after, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    history = json.loads(result.stdout.split("HISTORY ", 1)[1])
    assert [entry["epoch"] for entry in history] == [1, 2, 3]  # epochs=3
    assert all({"loss"} <= set(e["train"]) and {"loss", "f1"} <= set(e["eval"]) for e in history)
    index = json.loads((tmp_path / "checkpoints" / "checkpoints.json").read_text())  # output_dir="checkpoints"
    assert (tmp_path / "checkpoints" / index["best"] / "model").is_dir()
