"""`fab verify`, `fab status`, `fab rollback` and `fab remove` end to end on a lab fleet.

Each test breaks something by hand, checks that the tool sees it, and provisions the fleet
back; the test that stops the proxy runs last.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from ccie_remote.lab import Lab, LabHost
from ccie_remote.render import parse_environment

from ..conftest import LabFactory
from .helpers import fab, fingerprints, read

pytestmark = pytest.mark.lab

LAB = {"builders": 2, "docker_builders": 1}


@pytest.fixture(scope="module")
def provisioned(lab: Lab) -> Path:
    lab.exec(lab.services().container, "echo 'LANG=C.UTF-8' >> /etc/environment")
    result = fab("provision", "--inventory", str(lab.inventory_path))
    assert result.returncode == 0, result.stdout + result.stderr
    return lab.inventory_path


def name(host: LabHost) -> str:
    return f"127.0.0.1:{host.ssh_port}"


def failed_checks(output: str) -> set[tuple[str, str]]:
    """(host, check) of every FAILED row of verify's table."""
    found = set()
    for line in output.splitlines():
        if " FAILED " in line:
            host, rest = line.split(None, 1)
            found.add((host, rest.split(" FAILED ")[0].strip()))
    return found


def reprovision(inventory: Path) -> None:
    result = fab("provision", "--inventory", str(inventory))
    assert result.returncode == 0, result.stdout + result.stderr


def test_verify_passes_after_provision(lab: Lab, provisioned: Path) -> None:
    result = fab("verify", "--inventory", str(provisioned))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "checks passed on 3 host(s)" in result.stdout
    for check in (
        "replicated running",
        "console on 8800",
        "docker daemon",
        "metadata bypass",
        f"bypass {lab.services().fleet_ip}",
        "fetch through proxy",
        "JVM_OPTS",
    ):
        assert check in result.stdout


def test_verify_names_a_builder_whose_no_proxy_is_broken(lab: Lab, provisioned: Path) -> None:
    builder = lab.builders()[1]
    services_ip = lab.services().fleet_ip
    lab.exec(builder.container, f"sed -i 's/,{services_ip},/,/' /etc/environment")
    result = fab("verify", "--inventory", str(provisioned))
    assert result.returncode == 1
    failed = failed_checks(result.stdout)
    assert (name(builder), f"bypass {services_ip}") in failed
    assert (name(builder), "env NO_PROXY") in failed
    assert {host for host, _ in failed} == {name(builder)}
    assert f"{name(builder)} (bypass {services_ip})" in result.stderr
    assert "fab provision" in result.stdout  # says what to do about it

    status = fab("status", "--inventory", str(provisioned))
    assert status.returncode == 1
    line = next(row for row in status.stdout.splitlines() if row.startswith(name(builder)))
    assert "drifted: /etc/environment (NO_PROXY, no_proxy)" in line
    assert all("in step" in row for row in status.stdout.splitlines()[1:] if row != line)
    reprovision(provisioned)


def test_verify_sees_replicated_conf_disagree(lab: Lab, provisioned: Path) -> None:
    services = lab.services()
    lab.exec(
        services.container,
        """echo '{"HttpProxy": "http://other.lab.test:1"}' """
        "> /etc/replicated.conf",
    )
    result = fab("verify", "--inventory", str(provisioned))
    assert result.returncode == 1
    assert failed_checks(result.stdout) == {(name(services), "replicated.conf")}
    reprovision(provisioned)


def test_status_in_step_and_installed(lab: Lab, provisioned: Path) -> None:
    result = fab("status", "--inventory", str(provisioned))
    assert result.returncode == 0, result.stdout + result.stderr
    rows = result.stdout.splitlines()[1:]
    assert len(rows) == 3 and all(row.split()[2:] == ["yes", "in", "step"] for row in rows)


def test_rollback_restores_byte_identical_files(
    lab: Lab, provisioned: Path, tmp_path: Path
) -> None:
    hosts = [lab.services(), *lab.builders()]
    before = {h.container: fingerprints(lab, h) for h in hosts}
    changed = tmp_path / "changed.toml"
    changed.write_text(
        provisioned.read_text().replace("proxy.lab.test:3128", f"{lab.proxy().fleet_ip}:3128")
    )
    reprovision(changed)
    after_change = {h.container: fingerprints(lab, h) for h in hosts}
    assert after_change != before
    restarts = len(lab.events(lab.services().container))

    result = fab("rollback", "--inventory", str(provisioned))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "restored /etc/environment" in result.stdout
    assert {h.container: fingerprints(lab, h) for h in hosts} == before
    new_events = [f"{e.source} {e.action}" for e in lab.events(lab.services().container)]
    assert new_events[restarts:] == [
        "replicated stop",
        "replicated-agent stop",
        "replicated-agent start",
        "replicated start",
    ]

    reprovision(changed)
    assert {h.container: fingerprints(lab, h) for h in hosts} == after_change
    reprovision(provisioned)


def test_rollback_refuses_without_a_backup(lab_factory: LabFactory) -> None:
    fresh = lab_factory(builders=1)
    result = fab("rollback", "--inventory", str(fresh.inventory_path))
    assert result.returncode == 1
    assert "no backup on this host" in result.stdout


def test_remove_takes_off_only_our_settings(lab: Lab, provisioned: Path) -> None:
    services, docker_builder, plain = lab.services(), *lab.builders()
    lab.exec(services.container, """echo '{"HttpProxy": "x", "Keep": 1}' > /etc/replicated.conf""")
    reprovision(provisioned)

    result = fab("remove", "--inventory", str(provisioned))
    assert result.returncode == 0, result.stdout + result.stderr
    environment = read(lab, services, "/etc/environment")
    assert "PROXY" not in environment and "JVM_OPTS" not in environment
    assert "LANG=C.UTF-8" in environment
    assert json.loads(read(lab, services, "/etc/replicated.conf")) == {"Keep": 1}
    default = read(lab, services, "/etc/default/replicated")
    assert "PROXY" not in default and "REPLICATED_OPTS=" in default
    assert (
        fingerprints(lab, docker_builder)["/etc/systemd/system/docker.service.d/http-proxy.conf"]
        == "absent"
    )
    assert "PROXY" not in read(lab, plain, "/etc/environment")
    events = [f"{e.source} {e.action}" for e in lab.events(services.container)]
    assert events[-4:] == [
        "replicated stop",
        "replicated-agent stop",
        "replicated-agent start",
        "replicated start",
    ]

    again = fab("remove", "--inventory", str(provisioned))
    assert again.stdout.count("nothing of ccie-remote's left to remove") == 3
    reprovision(provisioned)
    assert fab("verify", "--inventory", str(provisioned)).returncode == 0


def test_verify_fails_everywhere_when_the_proxy_is_stopped(lab: Lab, provisioned: Path) -> None:
    subprocess.run(
        ["docker", "stop", "-t", "1", lab.proxy().container], check=True, capture_output=True
    )
    result = fab("verify", "--inventory", str(provisioned))
    assert result.returncode == 1
    failed = failed_checks(result.stdout)
    for host in (lab.services(), *lab.builders()):
        assert (name(host), "proxy answers") in failed
        assert (name(host), "fetch through proxy") in failed


def test_corporate_fleet_provisions_and_verifies(lab_factory: LabFactory) -> None:
    """Behind a corporate proxy only fleet machines bypass it: no S3, every builder listed."""
    corporate = lab_factory(builders=2, corporate=True)
    inventory = str(corporate.inventory_path)
    assert fab("provision", "--inventory", inventory).returncode == 0
    first, second = corporate.builders()
    values = parse_environment(read(corporate, first, "/etc/environment"))
    assert "s3.amazonaws.com" not in values["NO_PROXY"]
    assert {first.fleet_ip, second.fleet_ip} <= set(values["NO_PROXY"].split(","))

    result = fab("verify", "--inventory", inventory)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"bypass {second.fleet_ip}" in result.stdout  # builders reach each other directly
    assert f"bypass {first.fleet_ip}" in result.stdout
