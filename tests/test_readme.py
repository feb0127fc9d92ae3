"""README.md: every shell command in its code blocks is either run here, verbatim, with the output
it shows compared to the real one, or known (install and CI commands) and checked as far as a test can."""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import uuid
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")

SEE_IT_WORK = "pytest example_project"
DEMO = "FLOPBUDGET_DEMO_REGRESSION=1 pytest example_project -k gpt_training_step"
CLI = "flopbudget example_project.models:vit --input-shape 1,3,224,224 --depth 1"
CI = "python -m pytest --flop-strict --flop-report=$GITHUB_STEP_SUMMARY"
RUN = {SEE_IT_WORK, DEMO, CLI, CI}

GIT_INSTALL = 'pip install "pytest-flopbudget @ git+https://github.com/YOUR-ORG/pytest-flopbudget.git"'
PATH_INSTALL = "pip install ./pytest-flopbudget"
SHARD_STEP = "python -m pytest --splits 3 --group ${{ matrix.group }} --flop-report=shard-${{ matrix.group }}.json"
CI_GIT_INSTALL = 'pip install "pytest-flopbudget @ git+https://github.com/YOUR-ORG/pytest-flopbudget.git@COMMIT"'
TORCHVISION = "pip install torch==2.13.0 torchvision==0.28.0 --index-url https://download.pytorch.org/whl/cpu"

# Not run by this suite, each for a reason, each checked below as far as a test can.
KNOWN = {
    "pip install -r requirements-dev.txt": "installs; .ci/run runs it on a fresh machine",
    "python -m pytest": "this very suite in one process; .ci/run runs it under xdist",
    "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu": "installs (CI snippet)",
    GIT_INSTALL: "installs the plugin from git (placeholder URL); checked as a requirement below",
    PATH_INSTALL: "installs the plugin from a checkout; checked below",
    CI_GIT_INSTALL: "installs the plugin in CI (placeholder URL); checked as a requirement below",
    TORCHVISION: "installs torch with its paired torchvision from the CPU index; checked below",
    "if [ -f requirements.txt ]; then pip install -r requirements.txt; fi": "the user's own dependencies (CI snippet)",
    "python -m pytest -n auto": "this very suite; .ci/run runs it",
    "pytest --flop-update-baseline": "a user's repository; options checked against the plugin",
    "git diff flop_baseline.yaml": "a user's repository",
    "pytest --flop-prune-baseline": "a user's repository; options checked against the plugin",
    "pytest --flop-device=meta": "a user's repository; options checked against the plugin",
    ".ci/run": "CI itself; it runs this suite",
    "FLOPBUDGET_CI_ONLY=pinned .ci/run": "CI itself, pinned environment only",
    SHARD_STEP: "one shard of the matrix recipe; tests/plugin/test_shards.py runs three and merges them",
}


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README, re.M | re.S)


def strip_comment(line: str) -> str:
    return re.sub(r"\s+#.*$", "", line).strip()


def shell_commands() -> list[str]:
    commands = [strip_comment(line) for block in blocks("bash") for line in block.splitlines()]
    for block in blocks("yaml"):
        for step in yaml.safe_load(block)["jobs"]["flops"]["steps"]:
            if "run" in step:
                commands.append(strip_comment(step["run"]))
    return [c for c in commands if c]


def text_block_after(command: str) -> str:
    """The ```text block that shows the output of the ```bash block holding ``command``."""
    match = re.search(rf"^```bash\n[^`]*?{re.escape(command)}[^`]*?^```\n\n```text\n(.*?)^```", README, re.M | re.S)
    assert match, f"README has no output block after {command!r}"
    return match.group(1)


def user_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "FLOPBUDGET_", "GITHUB_"))}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The README's commands, started together (they are independent) and awaited by each test."""
    project = tmp_path_factory.mktemp("user_repo") / "example_project"
    shutil.copytree(ROOT / "example_project", project, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    summary = project.parent / f"step_summary_{uuid.uuid4()}"  # GitHub's file has no suffix
    started = {
        command: subprocess.Popen(
            ["bash", "-c", command], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for command, cwd, env in (
            # the README shows the table as a terminal 120 columns wide prints it (the table fits the width)
            (SEE_IT_WORK, ROOT, user_env(COLUMNS="120")),
            (DEMO, ROOT, user_env()),
            (CLI, ROOT, user_env()),
            # the CI step as a user's repository runs it: from the root of (a copy of) the example
            (CI, project, user_env(GITHUB_STEP_SUMMARY=str(summary))),
        )
    }
    results = {}
    try:
        for command, process in started.items():
            out, _ = process.communicate(timeout=300)
            results[command] = (process.returncode, out)
    finally:
        for process in started.values():
            if process.poll() is None:
                process.kill()
    results["summary"] = summary
    return results


def test_every_command_is_run_or_known():
    commands = shell_commands()
    assert len(commands) == len(set(commands)), "a command appears twice"
    unknown = set(commands) - RUN - set(KNOWN)
    assert not unknown, f"README commands no test knows: {unknown}; run them here or add them to KNOWN"
    missing = (RUN | set(KNOWN)) - set(commands)
    assert not missing, f"commands no longer in the README: {missing}"


def test_ci_script_installs_and_runs_what_the_readme_says():
    script = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    commands = [line for line in script if line and not line.startswith("#")]
    # the README's test command, as a timed step of .ci/run, after torch and requirements-dev.txt
    test_step = next(i for i, line in enumerate(commands) if line.endswith(" python -m pytest -n auto"))
    assert commands.index("python -m pip install -q torch==2.13.0") < \
        commands.index("python -m pip install -q -r requirements-dev.txt") < test_step
    assert "torch==2.13.0" in (ROOT / "requirements-dev.txt").read_text().split()
    # the tests that command deselects (pyproject.toml's addopts) run in the step after it
    assert commands[test_step + 1].endswith(" python -m pytest -n auto -m slow")
    addopts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["addopts"]
    assert shlex.split(addopts)[-2:] == ["-m", "not slow"]
    assert "python -m pytest -n auto -m slow" in README


@pytest.mark.parametrize("command", sorted(c for c in KNOWN if c.startswith("pytest ")))
def test_known_pytest_commands_use_real_options(command):
    from pytest_flopbudget.plugin.options import OPTIONS

    flags = {option.flag: option for option in OPTIONS}
    for token in shlex.split(command)[1:]:
        name, _, value = token.partition("=")
        assert name in flags, f"{command}: {name} is not a pytest-flopbudget option"
        option = flags[name]
        assert (option.kind == "bool") == (value == ""), f"{command}: {name} takes {option.kind}"
        if value:
            option.check(value)


def test_see_it_work_passes_and_prints_the_table_shown(runs):
    code, out = runs[SEE_IT_WORK]
    assert code == 0, out[-3000:]
    assert f"rootdir: {ROOT / 'example_project'}" in out and "configfile: pytest.ini" in out
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if re.fullmatch(r"=+ flop budget =+", line))
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("flopbudget: "))
    shown = re.search(r"^```text\n(=+ flop budget =+\n.*?)^```", README, re.M | re.S)
    assert shown, "README shows no budget table"
    assert "\n".join(lines[start : end + 1]) + "\n" == shown.group(1)
    assert "flopbudget: 12 ok\n" in out and "12 passed" in out


def test_demo_regression_fails_and_names_what_grew(runs):
    code, out = runs[DEMO]
    assert code == 1, out[-3000:]
    assert "OVER BUDGET" in out and "tests/test_language.py::test_gpt_training_step" in out
    assert "flops regressed" in out and "grown: blocks" in out
    assert "1 failed" in out


def test_cli_prints_the_table_shown_with_the_engines_numbers(runs, monkeypatch):
    code, out = runs[CLI]
    assert code == 0, out
    table = "\n".join(line for line in out.splitlines() if not line.startswith("flopbudget: "))  # progress
    assert table + "\n" == text_block_after(CLI)

    import torch

    import pytest_flopbudget as fb

    monkeypatch.syspath_prepend(str(ROOT))
    from example_project.models import vit

    expected = fb.measure(vit, lambda: torch.randn(1, 3, 224, 224), device="meta")
    assert f"total: {expected.flops / 1e9:.3f} GFLOPs, {expected.macs / 1e9:.3f} GMACs" in table
    # ViT-Tiny by hand: 12 blocks of 12*192^2 + 13*192 weights, patch conv, tokens, norm and head
    dim = 192
    params = 12 * (12 * dim * dim + 13 * dim) + (3 * 16 * 16 * dim + dim) + dim + 197 * dim + 2 * dim + (dim * 1000 + 1000)
    assert expected.params == params and f"({params} trainable) on meta" in table


def test_ci_step_passes_and_writes_the_step_summary(runs):
    code, out = runs[CI]
    assert code == 0, out[-3000:]
    summary = runs["summary"].read_text()
    assert summary.startswith("## pytest-flopbudget\n")
    assert "| `tests/test_vision.py::test_resnet` | 3.632 |" in summary
    assert "flopbudget: 12 ok\n" in summary


def test_python_blocks(monkeypatch):
    writing, api, generate, training_step = blocks("python")
    compile(writing, "README: writing budgets", "exec")  # imports a user's package: compiled only
    from pytest_flopbudget.plugin.marker import KEYWORDS

    for keyword in re.findall(r"(\w+)=", re.search(r"flop_budget\((.*?)\)", writing).group(1)):
        assert keyword in KEYWORDS

    monkeypatch.syspath_prepend(str(ROOT))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(api, "README: Python API", "exec"), {})
    first = out.getvalue().split()
    baseline = yaml.safe_load((ROOT / "example_project" / "flop_baseline.yaml").read_text())
    resnet = baseline["entries"]["tests/test_vision.py::test_resnet"]
    # the example measures resnet on meta too: the API block's numbers are the committed ones
    assert [int(first[0]), int(first[1]), int(first[2])] == [resnet["flops"], resnet["macs"], resnet["params"]]
    assert int(first[4]) == resnet["modules"]["layer1"]["macs"]


def test_counting_any_code_blocks_run_and_count_what_they_say(monkeypatch):
    """The "Counting any code" examples run as written (one namespace, as a reader would paste
    them) and print what their comments say."""
    _, _, generate, training_step = blocks("python")
    monkeypatch.syspath_prepend(str(ROOT))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    namespace: dict = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(generate, "README: counting a generate loop", "exec"), namespace)
        exec(compile(training_step, "README: counting a training step", "exec"), namespace)
    lines = out.getvalue().splitlines()
    assert lines[0].endswith(" {}")  # nothing uncounted
    assert "LlamaForCausalLM" in out.getvalue()
    flops, adamw, params = map(int, lines[-1].split())
    assert params == sum(p.numel() for p in namespace["model"].parameters())
    assert adamw == 11 * params  # AdamW with its default weight decay: 11 per parameter element
    assert flops > adamw


def test_install_commands_name_this_package():
    """The package is not on PyPI: the README installs it from git or a path, by its real name."""
    from packaging.requirements import Requirement

    project = re.search(r'^name = "(.+)"$', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    for command in (GIT_INSTALL, CI_GIT_INSTALL):
        requirement = Requirement(shlex.split(command)[2])
        assert requirement.name == project
        assert requirement.url.startswith("git+https://") and "YOUR-ORG" in requirement.url
    assert shlex.split(PATH_INSTALL)[2].rstrip("/").endswith(project)  # the checkout's folder name
    assert "YOUR-ORG" in README and "placeholder" in README
    assert "pip install pytest-flopbudget`" in README  # the name once published
    # pinned to a commit (a labelled placeholder), never to a tag that does not exist
    assert CI_GIT_INSTALL.endswith('.git@COMMIT"') and "COMMIT are placeholders" in README
    assert not re.search(r"\.git@v\d", README)


def test_torchvision_is_pinned_with_torch_from_the_same_index():
    """Issue 19.11: an unpinned torchvision replaced the CPU torch with a CUDA build."""
    torch_pin = re.search(r"torch==(\S+)", TORCHVISION).group(1)
    assert torch_pin == "2.13.0" and "torch==2.13.0" in (ROOT / "requirements-dev.txt").read_text().split()
    assert "--index-url https://download.pytorch.org/whl/cpu" in TORCHVISION and "torchvision==" in TORCHVISION
    requirements = next(b for b in blocks("text") if "torchvision==" in b).split()
    assert requirements == ["--extra-index-url", "https://download.pytorch.org/whl/cpu", "torch==2.13.0",
                            "torchvision==0.28.0"]


def test_ci_recipe_works_for_a_repository_that_is_not_a_package():
    steps = [step.get("run", "") for block in blocks("yaml") for step in yaml.safe_load(block)["jobs"]["flops"]["steps"]]
    runs = [strip_comment(run) for run in steps if run]
    assert not any("pip install -e ." in run for run in runs)
    torch_step = runs.index("pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu")
    assert torch_step < runs.index(CI_GIT_INSTALL) < runs.index(CI)


def test_quickstart_says_what_torch_costs_and_which_tests_run():
    quickstart = README.split("## Quickstart")[1].split("\n## ")[0]
    assert "CUDA" in quickstart and "several GB" in quickstart
    assert "--index-url https://download.pytorch.org/whl/cpu" in quickstart
    assert ".ci/run" in quickstart and "HF_HUB_OFFLINE=1" in quickstart
    # no test count or duration that no test keeps true; the slow tests and how to run them
    assert not re.search(r"\d+ tests|about \d+ minutes", quickstart)
    assert "`python -m pytest -n auto -m slow`" in quickstart and "tests/zoo" in quickstart
    assert "python -m pytest -n auto" in quickstart


def test_the_test_command_says_in_one_line_when_the_zoo_collects_nothing():
    """The Quickstart's promise, kept under xdist too (its controller collects nothing, so the line
    is in the session header): the zoo collects nothing without torchvision and timm, and says so."""
    from optional_libraries import zoo_unusable

    result = subprocess.run([sys.executable, "-m", "pytest", "-n", "2", "--co", "-p", "no:cacheprovider", "tests/zoo"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    lines = [line for line in result.stdout.splitlines() if line.startswith("tests/zoo not collected")]
    reasons = zoo_unusable()
    if reasons:
        assert lines == ["tests/zoo not collected (it runs in CI's newest environment): " + "; ".join(reasons)]
        assert result.returncode == pytest.ExitCode.NO_TESTS_COLLECTED
    else:  # CI's newest environment: the zoo runs, and nothing says otherwise
        assert lines == [] and result.returncode == pytest.ExitCode.OK
