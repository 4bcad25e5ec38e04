"""Publishing and installing: the Pages workflow builds what the README builds, and the lock pins it all.

The workflow cannot run here, so these tests read it: it must run the README's build command and
publish that command's output folder, at the URL the README gives for the repository in _config.yml.
The install tests run scripts/setup-env and scripts/lock-env against a stand-in Python that records
what pip is asked to do, so they take a second and need no network.
"""
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "book.yml"
LOCK = ROOT / "requirements-lock.txt"
NOT_LOCKED = {"torch", "genlib-book", "pip", "setuptools", "wheel"}  # torch: setup-env installs GENLIB_TORCH


def readme_command(script: str) -> str:
    """The README's command that runs scripts/<script>, from its shell blocks, without its comment."""
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    found = [line.split("#")[0].strip() for block in blocks for line in block.splitlines()
             if line.split("#")[0].strip().startswith(f"bash scripts/{script}")]
    assert len(found) == 1, f"the README should give one command running scripts/{script}: {found}"
    return found[0]


def workflow() -> dict:
    loaded = yaml.safe_load(WORKFLOW.read_text())
    loaded["on"] = loaded.pop(True, loaded.get("on"))  # YAML 1.1 reads the key `on` as true
    return loaded


def run_commands(step: dict) -> list[str]:
    return [line.split("#")[0].strip() for line in step.get("run", "").splitlines() if line.split("#")[0].strip()]


def action(step: dict) -> str:
    return step.get("uses", "").split("@")[0]


def test_workflow_builds_with_the_readme_command_and_publishes_its_output():
    flow = workflow()
    assert flow["on"]["push"]["branches"] == ["main"] and "workflow_dispatch" in flow["on"]
    build, deploy = flow["jobs"]["build"], flow["jobs"]["deploy"]
    assert build.get("env", {}).get("GENLIB_SCALE", "quick") == "quick"
    steps = build["steps"]
    commands = [command for step in steps for command in run_commands(step)]
    assert commands == [readme_command("build-book")], "the workflow must build exactly as the README says"
    order = [action(step) or "build" for step in steps]
    assert order == ["actions/checkout", "actions/setup-python", "build", "actions/configure-pages",
                     "actions/upload-pages-artifact"]
    uploaded = next(step for step in steps if action(step) == "actions/upload-pages-artifact")["with"]["path"]
    built = re.search(r"book built: \$root/(\S+)/index\.html", (ROOT / "scripts" / "build-book").read_text())
    assert built and uploaded.rstrip("/") == built.group(1) == "_build/html"

    assert deploy["needs"] == "build" or deploy["needs"] == ["build"]
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert deploy["environment"]["name"] == "github-pages"
    assert [action(step) for step in deploy["steps"]] == ["actions/deploy-pages"]
    for step in steps + deploy["steps"]:
        if "uses" in step:
            assert re.fullmatch(r"[\w-]+/[\w-]+@v\d+", step["uses"]), f"pin the action's major version: {step}"


def test_readme_gives_the_pages_url_of_the_repository_in_config():
    url = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    owner, repo = re.fullmatch(r"https://github\.com/([\w.-]+)/([\w.-]+?)/?", url).groups()
    pages = f"https://{owner.lower()}.github.io/{repo}/"
    readme = (ROOT / "README.md").read_text()
    assert pages in readme, f"the README should say the book is published at {pages}"
    others = set(re.findall(r"https://[\w.-]+\.github\.io/[\w./-]*", readme)) - {pages, "https://OWNER.github.io/REPO/"}
    assert not others, f"Pages URLs in the README that are not the repository's: {others}"
    assert "bash scripts/lock-env" in readme, "the README should give the command that refreshes the lock"


def requirements(path: Path) -> list[Requirement]:
    """The requirements of a requirements file, following `-r` includes."""
    found = []
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("-r"):
            found += requirements(path.parent / line[2:].strip())
        elif line:
            found.append(Requirement(line))
    return found


def lock() -> dict[str, Version]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        if line and not line.startswith("#"):
            assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*==\S+", line), f"not a name==version pin: {line!r}"
            name, version = line.split("==")
            assert canonicalize_name(name) not in pins, f"pinned twice: {name}"
            pins[canonicalize_name(name)] = Version(version)
    return pins


def test_lock_pins_every_requirement_within_its_range_and_not_torch():
    pins = lock()
    wanted = requirements(ROOT / "requirements.txt") + requirements(ROOT / "requirements-test.txt")
    assert len(wanted) > 5 and len(pins) > len(wanted)
    for requirement in wanted:
        name = canonicalize_name(requirement.name)
        if name in NOT_LOCKED:
            continue
        assert name in pins, f"{requirement} is not pinned in {LOCK.name}: bash scripts/lock-env"
        assert requirement.specifier.contains(pins[name], prereleases=True), \
            f"{LOCK.name} pins {name}=={pins[name]}, outside {requirement}: bash scripts/lock-env"
    assert not NOT_LOCKED & set(pins), f"{LOCK.name} must not pin {NOT_LOCKED & set(pins)}"


def test_lock_is_made_on_the_python_that_ci_builds_with():
    made_on = re.search(r"^#.* on Python (\d+\.\d+)\.\d+", LOCK.read_text(), re.M)
    assert made_on, f"{LOCK.name}'s header should name the Python it was made on"
    setup = next(step for step in workflow()["jobs"]["build"]["steps"] if action(step) == "actions/setup-python")
    assert str(setup["with"]["python-version"]) == made_on.group(1)


FAKE_PYTHON = """#!/usr/bin/env bash
# Stands in for a venv's python: records its arguments, answers what the scripts ask.
echo "$*" >> "$FAKE_LOG"
case "$*" in
  "-c import torch") exit 1 ;;
  "-V") echo "Python 3.9.0" ;;
  "-c import platform; print(platform.python_version())") echo "3.11.9" ;;
  "-m pip freeze"*) printf '%s\\n' "$FAKE_FREEZE" ;;
  *" -c "*requirements-lock.txt*) [ -z "${FAKE_LOCK_FAILS:-}" ] ;;
esac
"""


@pytest.fixture
def checkout(tmp_path):
    """A copy of the scripts and requirement files, with a stand-in .venv; (root, environment)."""
    (tmp_path / "scripts").mkdir()
    for name in ["scripts/setup-env", "scripts/lock-env", "requirements.txt", "requirements-test.txt",
                 "requirements-lock.txt", "pyproject.toml"]:
        (tmp_path / name).write_text((ROOT / name).read_text())
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("GENLIB_TORCH", "FAKE_LOCK_FAILS")}
    env["FAKE_LOG"] = str(tmp_path / "log")
    return tmp_path, env


def setup_env(root: Path, env: dict) -> tuple[list[list[str]], str]:
    """Source setup-env in the copy; (the pip installs it asked for, its stderr)."""
    log = Path(env["FAKE_LOG"])
    log.write_text("")
    done = subprocess.run(["bash", "-c", 'source "$1/scripts/setup-env"', "_", str(root)], env=env,
                          capture_output=True, text=True, check=True)
    installs = [shlex.split(line)[3:] for line in log.read_text().splitlines() if line.startswith("-m pip install")]
    return [i for i in installs if i != ["-q", "--upgrade", "pip"]], done.stderr


def test_setup_env_installs_with_the_lock_as_constraints(checkout):
    root, env = checkout
    lock_file = str(root / "requirements-lock.txt")
    installs, _ = setup_env(root, env)
    assert installs == [["-q", "-c", lock_file, "torch==2.13.0"],
                        ["-q", "-c", lock_file, "-r", str(root / "requirements-test.txt"), "-e", str(root)]]
    assert setup_env(root, env)[0] == [], "set up already: nothing to install"
    with open(lock_file, "a") as f:
        f.write("zzz-new-package==1.0\n")
    assert setup_env(root, env)[0] == installs, "a changed lock must be installed again"


def test_setup_env_falls_back_to_the_ranges_where_the_lock_cannot_install(checkout):
    root, env = checkout
    installs, stderr = setup_env(root, {**env, "FAKE_LOCK_FAILS": "1"})
    with_lock = ["-q", "-c", str(root / "requirements-lock.txt"), "-r", str(root / "requirements-test.txt"),
                 "-e", str(root)]
    assert installs[-2:] == [with_lock, with_lock[:1] + with_lock[3:]]
    made_on = re.search(r"on Python [\d.]*\d", (root / "requirements-lock.txt").read_text()).group(0)
    assert f"({made_on}) does not install on Python 3.9.0" in stderr and "version ranges" in stderr


def test_lock_env_pins_the_environment_but_torch_and_the_packaging_tools(checkout):
    root, env = checkout
    env["FAKE_FREEZE"] = "\n".join(["Sphinx==7.4.7", "torch==2.13.0+cpu", "pip==26.3", "setuptools==80.0",
                                    "nvidia-cublas-cu12==12.8.4.1", "triton==3.5.0", "alabaster==0.7.16"])
    subprocess.run(["bash", str(root / "scripts" / "lock-env"), str(root / ".venv")], env=env, check=True,
                   capture_output=True)
    written = (root / "requirements-lock.txt").read_text().splitlines()
    assert [line for line in written if not line.startswith("#")] == ["alabaster==0.7.16", "Sphinx==7.4.7"]
    header = "\n".join(line for line in written if line.startswith("#"))
    assert "Python 3.11.9" in header and "bash scripts/lock-env" in header

    env["FAKE_FREEZE"] = "Sphinx @ file:///tmp/sphinx-7.4.7-py3-none-any.whl"
    done = subprocess.run(["bash", str(root / "scripts" / "lock-env"), str(root / ".venv")], env=env,
                          capture_output=True, text=True)
    assert done.returncode != 0 and "not a name==version pin" in done.stderr

    defaults = {name: re.search(r"GENLIB_TORCH:-([^}]+)\}", (ROOT / "scripts" / name).read_text()).group(1)
                for name in ("setup-env", "lock-env")}
    assert len(set(defaults.values())) == 1, f"lock-env and setup-env must default to the same torch: {defaults}"
