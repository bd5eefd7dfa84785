"""A provision killed halfway leaves no half-written file, and the next run finishes the job."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ccie_remote.lab import Lab, wait_for
from ccie_remote.render import BEGIN, END, parse_environment

from .helpers import PASSPHRASE, REPO, fab, read, summary_rows

pytestmark = pytest.mark.lab

LAB = {"builders": 2, "docker_builders": 1}


def builder_installer_started(lab: Lab) -> bool:
    return any(e.source == "init-builder" and e.action == "start" for e in lab.events())


def test_killed_run_leaves_whole_files_and_the_next_run_finishes(lab: Lab) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "fabric", "provision", "--inventory", str(lab.inventory_path)],
        cwd=REPO,
        env={**os.environ, "CIRCLE_SECRET_PASSPHRASE": PASSPHRASE},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: builder_installer_started(lab), "a builder installer to start")
    finally:
        process.kill()
        process.wait()

    hosts = [lab.services(), *lab.builders()]
    for host in hosts:
        text = read(lab, host, "/etc/environment")
        assert text.count(BEGIN) == text.count(END) == 1
        assert parse_environment(text)["HTTP_PROXY"] == "http://proxy.lab.test:3128"

    result = fab("provision", "--inventory", str(lab.inventory_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert all(row[1] in ("changed", "unchanged") for row in summary_rows(result.stdout).values())
    for host in lab.builders():
        assert (
            lab.exec(host.container, "test -f /var/lib/ccie-remote/installed-builder").returncode
            == 0
        )
    for host in hosts:
        leftovers = lab.exec(host.container, "find /etc -name '*.ccie-new.*'").stdout
        assert leftovers == ""
        assert (
            lab.exec(
                host.container, "test -e /var/lib/ccie-remote/installer.env", check=False
            ).returncode
            != 0
        )

    again = fab("provision", "--inventory", str(lab.inventory_path))
    assert {row[1] for row in summary_rows(again.stdout).values()} == {"unchanged"}


def test_a_builder_without_passwordless_sudo_is_named(lab: Lab) -> None:
    builder = lab.builders()[1]
    lab.exec(builder.container, "mv /etc/sudoers.d/90-lab-ubuntu /root/")
    try:
        result = fab("provision", "--inventory", str(lab.inventory_path))
    finally:
        lab.exec(builder.container, "mv /root/90-lab-ubuntu /etc/sudoers.d/")
    assert result.returncode == 1
    row = summary_rows(result.stdout)[f"127.0.0.1:{builder.ssh_port}"]
    assert row[1] == "failed" and "passwordless sudo" in row[3]
