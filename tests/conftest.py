"""Fixtures shared by the suite. The lab fixtures bring up real labs for a test module.

A lab test module asks for ``lab`` and may shape it with a module-level ``LAB`` dict of
``up`` options, or per test with an indirect parameter::

    pytestmark = pytest.mark.lab
    LAB = {"builders": 1, "docker_builders": 1}

    @pytest.mark.parametrize("lab", [{"corporate": True}], indirect=True)
    def test_corporate(lab): ...

``lab_factory`` brings up further labs in the same module. Every lab is named after its
module, its options and this process, writes its lab.toml into a temporary folder, and is
taken down when the module ends, whether its tests passed or not.

Without a Docker engine the lab tests fail with a message saying how to start one; set
``CCIE_LAB_OPTIONAL=1`` to skip them instead (CI must not skip silently).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ccie_remote.errors import LabError
from ccie_remote.lab import Lab, down, status, up
from ccie_remote.lab.docker import require_engine

LabFactory = Callable[..., Lab]
OPTIONAL = "CCIE_LAB_OPTIONAL"
TEST_LAB = re.compile(r"^t-.+-p(?P<pid>\d+)(-\d+)?$")


@pytest.fixture(scope="session")
def lab_engine() -> None:
    """A Docker engine that answers; test labs left by dead runs are removed first."""
    try:
        require_engine()
    except LabError as error:
        if os.environ.get(OPTIONAL) == "1":
            pytest.skip(f"lab tests skipped ({OPTIONAL}=1): {error}")
        pytest.fail(f"{error} (or set {OPTIONAL}=1 to skip the lab tests)", pytrace=False)
    remove_orphaned_test_labs()


@pytest.fixture(scope="module")
def lab_factory(
    request: pytest.FixtureRequest,
    lab_engine: None,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LabFactory]:
    """Bring up labs for this module (keyword arguments as for ``up``); all go at its end."""
    made: list[str] = []

    def make(**options: Any) -> Lab:
        name = f"{lab_name(request.module.__name__, options)}-{len(made)}"
        made.append(name)
        return bring_up(name, options, tmp_path_factory.mktemp(name))

    try:
        yield make
    finally:
        for name in reversed(made):
            down(name)


@pytest.fixture(scope="module")
def lab(
    request: pytest.FixtureRequest,
    lab_engine: None,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Lab]:
    """The module's lab: the module's ``LAB`` options, updated by an indirect parameter."""
    options = {**getattr(request.module, "LAB", {}), **getattr(request, "param", {})}
    name = lab_name(request.module.__name__, options)
    try:
        yield bring_up(name, options, tmp_path_factory.mktemp(name))
    finally:
        down(name)


def bring_up(name: str, options: dict[str, Any], folder: Path) -> Lab:
    """``up`` with the lab's files in FOLDER."""
    return up(name=name, workdir=folder / ".lab", inventory=folder / "lab.toml", **options)


def lab_name(module: str, options: dict[str, Any]) -> str:
    """t-MODULE-OPTIONS-pPID: labs of parallel runs never collide (the factory adds -N)."""
    short = re.sub(r"[^a-z0-9]+", "-", module.rsplit(".", 1)[-1].lower()).strip("-")[:20]
    shape = f"b{options.get('builders', 2)}"
    shape += f"d{options['docker_builders']}" if options.get("docker_builders") else ""
    shape += "c" if options.get("corporate") else ""
    return f"t-{short}-{shape}-p{os.getpid()}"


def remove_orphaned_test_labs() -> None:
    """Take down test labs whose pytest process is gone (a run that was killed)."""
    for name in sorted({row["lab"] for row in status()}):
        match = TEST_LAB.match(name)
        if match and not process_alive(int(match["pid"])):
            down(name)


def process_alive(pid: int) -> bool:
    """Whether a process PID exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
