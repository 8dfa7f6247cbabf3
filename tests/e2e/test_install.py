"""Every install path completes from this repository's own files.

A clone is all a person has: the plain-server path builds and installs the service from
it, the add-on builds from its folder, and the project's address is written in one place
(pyproject.toml) and copied, by scripts/set-project-address, where a file needs it
literally. Nothing may fetch a release archive or name a placeholder.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
ADDRESS = PYPROJECT["project"]["urls"]["Repository"]
# What a person reads or runs to install: each must stay within the clone.
INSTALL_TEXTS = [
    "README.md",
    "docs/install.md",
    "addon/Dockerfile",
    "addon/DOCS.md",
    "Dockerfile",
    "config/systemd/recovery-coach.service",
]


def _tracked_files() -> list[Path]:
    """What a clone of this tree holds: files git tracks, and new ones it does not ignore."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return [ROOT / name for name in listed.split("\0") if name and (ROOT / name).is_file()]


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the tree as a clone has it (no build output, no venv, no caches)."""
    target = tmp_path_factory.mktemp("clone")
    for path in _tracked_files():
        dest = target / path.relative_to(ROOT)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dest)
    return target


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
    return done.stdout


def test_a_clone_builds_a_wheel_that_runs_the_service(clone: Path, tmp_path: Path) -> None:
    """The systemd path's `pip install .` from a clone: the wheel it builds holds every
    module and data file the service loads; run from that install alone (not from this
    checkout), `simulate` prints what the checkout prints for the same events."""
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip", "--quiet"]
    _run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", str(wheels), "."],
         cwd=clone)  # fmt: skip
    (wheel,) = wheels.glob("recovery_coach-*.whl")
    site = tmp_path / "site"
    _run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], cwd=tmp_path)
    env = {**os.environ, "PYTHONPATH": str(site)}
    where = _run([sys.executable, "-c", "import recovery_coach; print(recovery_coach.__file__)"],
                 cwd=tmp_path, env=env)  # fmt: skip
    assert Path(where.strip()).is_relative_to(site), where
    events = clone / "config" / "example-events.jsonl"
    config = clone / "config" / "example.yaml"
    from_wheel = _run(
        [sys.executable, "-m", "recovery_coach", "simulate", str(events), "--config", str(config)],
        cwd=tmp_path,
        env=env,
    )
    here = _run(
        [sys.executable, "-m", "recovery_coach", "simulate", str(events), "--config", str(config)],
        cwd=ROOT,
    )
    assert from_wheel.count('"nudge_id"') > 3
    assert from_wheel == here
    _run([sys.executable, "-m", "recovery_coach", "check-config", "--config", str(config)],
         cwd=tmp_path, env=env)  # fmt: skip


def test_the_systemd_unit_runs_what_the_documented_install_makes() -> None:
    """The unit's programs and files are the ones docs/install.md's commands create, from
    files the repository has."""
    unit = (ROOT / "config" / "systemd" / "recovery-coach.service").read_text()
    guide = (ROOT / "docs" / "install.md").read_text()
    steps = guide[guide.index("## A plain server: systemd") :]
    steps = steps[: steps.index("\n## ", 5)]
    for program in re.findall(r"^Exec\w*=(\S+)", unit, re.M):
        venv, _, name = program.partition("/bin/")
        assert f"python3 -m venv {venv}" in steps, program
        assert name in PYPROJECT["project"]["scripts"], program
    for path in re.findall(r"(/etc/recovery-coach/\S+)", unit):
        assert path.split(":")[0] in steps, path
    for copied in re.findall(r"(?:cp|install -m \d+|--constraint) (\S+)", steps):
        if not copied.startswith("/"):
            assert (ROOT / copied).exists(), copied


def test_no_install_path_fetches_from_outside_the_repository() -> None:
    """No release archive, no placeholder, no package index name for the service itself."""
    for name in INSTALL_TEXTS:
        text = (ROOT / name).read_text()
        assert "archive/refs" not in text, name
        assert not re.search(r"placeholder", text, re.I), name
        assert not re.search(r"pip install[^\n]*'recovery-coach\[", text), name


def test_the_project_address_is_written_in_one_place() -> None:
    """Every file that names the project's address names the one in pyproject.toml, and
    scripts/set-project-address knows each of them."""
    mover = (ROOT / "scripts" / "set-project-address").read_text()
    owner_repo = re.compile(r"https://github\.com/[\w.-]+/recovery[-_]coach\b")
    holders = []
    for path in _tracked_files():
        if path.suffix in (".png", ".whl", ".db") or "tests" in path.parts:
            continue
        text = path.read_text(errors="replace")
        for found in owner_repo.findall(text):
            assert found == ADDRESS, f"{path.relative_to(ROOT)}: {found}"
        if ADDRESS in text:
            holders.append(path.relative_to(ROOT).as_posix())
    assert holders
    for name in holders:
        if not name.endswith(".md"):  # prose says where to look; the files hold it
            assert name in mover, f"scripts/set-project-address does not move {name}"
