from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from ccie_remote import render
from ccie_remote.userdata import builder_userdata, merge_environment_command

from .helpers import fleet
from .test_render import GUIDE_APPENDED, UBUNTU_ENVIRONMENT, _environment_text


def merged_by_awk(tmp: Path, current: str) -> subprocess.CompletedProcess[str]:
    (tmp / "block").write_text(render.environment_block(fleet()))
    (tmp / "current").write_text(current)
    command = merge_environment_command(str(tmp / "block"), str(tmp / "current"))
    return subprocess.run(["bash", "-c", command], capture_output=True, text=True, check=False)


@given(_environment_text)
@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_boot_merge_matches_render_byte_for_byte(tmp_path: Path, current: str) -> None:
    result = merged_by_awk(tmp_path, current)
    assert result.returncode == 0, result.stderr
    assert result.stdout == render.environment(fleet(), current)


def test_boot_merge_of_guide_append_and_of_its_own_output(tmp_path: Path) -> None:
    current = UBUNTU_ENVIRONMENT + GUIDE_APPENDED
    once = merged_by_awk(tmp_path, current).stdout
    assert once == render.environment(fleet(), current)
    assert merged_by_awk(tmp_path, once).stdout == once


def test_boot_merge_refuses_a_block_without_end(tmp_path: Path) -> None:
    assert merged_by_awk(tmp_path, render.BEGIN + "\nA=1\n").returncode == 3


def script(**kwargs: object) -> str:
    return builder_userdata(fleet(), **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("docker", [False, True])
def test_script_passes_bash_n_and_shellcheck(tmp_path: Path, docker: bool) -> None:
    path = tmp_path / "userdata.sh"
    path.write_text(script(docker=docker, passphrase="p4ss-word"))
    subprocess.run(["bash", "-n", str(path)], check=True)
    if shutil.which("shellcheck"):
        result = subprocess.run(["shellcheck", str(path)], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout


def test_script_content() -> None:
    text = script(docker=True, passphrase="p4ss-word")
    assert text.startswith("#!/bin/bash\n") and "set -euo pipefail" in text
    assert render.DOCKER_DROPIN in text and "systemctl daemon-reload" in text
    assert "export SERVICES_PRIVATE_IP=10.0.1.238" in text
    assert "CIRCLE_SECRET_PASSPHRASE=p4ss-word" in text
    assert "/var/lib/ccie-remote/installed-builder" in text
    assert render.DOCKER_DROPIN not in script(docker=False, passphrase="x")


def test_passphrase_command_replaces_the_embedded_passphrase() -> None:
    text = script(docker=False, passphrase_command="aws secretsmanager get-secret-value --x y")
    assert "passphrase_command='aws secretsmanager get-secret-value --x y'" in text
    assert 'CIRCLE_SECRET_PASSPHRASE=$(bash -c "$passphrase_command")' in text
