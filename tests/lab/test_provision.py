"""`fab provision`, `fab tunnel` and `fab builders.add` end to end on a lab fleet.

The tests of this module run in order on one lab: a first run, the same run again, a proxy
change, then the cases that break a host on purpose, last.
"""

from __future__ import annotations

import difflib
import json
import signal
import socket
import subprocess
import sys
import tomllib
import urllib.request
from pathlib import Path

import pytest
import tomlkit

from ccie_remote.lab import Lab, LabHost, wait_for
from ccie_remote.render import parse_environment

from ..conftest import LabFactory
from .helpers import (
    PASSPHRASE,
    REPO,
    fab,
    fingerprints,
    now,
    read,
    sha256,
    ssh_counts,
    summary_rows,
)

pytestmark = pytest.mark.lab

# Three builders: the inventory of this module names two; the third is for builders.add.
LAB = {"builders": 3, "docker_builders": 1}


@pytest.fixture(scope="module")
def inventory(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The lab's inventory without its last builder, with comments a user would have."""
    document = tomlkit.parse(lab.inventory_path.read_text())
    document["builders"].pop()
    text = "# Rehearsal fleet, kept by hand.\n" + tomlkit.dumps(document)
    text = text.replace("[services]", "[services]  # the box with the console", 1)
    path = tmp_path_factory.mktemp("inventory") / "fleet.toml"
    path.write_text(text)
    return path


def name(host: LabHost) -> str:
    return f"127.0.0.1:{host.ssh_port}"


def events(lab: Lab, host: LabHost) -> list[str]:
    return [f"{e.source} {e.action}" for e in lab.events(host.container)]


def test_missing_passphrase_stops_before_any_change(lab: Lab, inventory: Path) -> None:
    before = {h.container: fingerprints(lab, h) for h in lab.hosts if h.ssh_port}
    result = fab("provision", "--inventory", str(inventory), passphrase=None)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "CIRCLE_SECRET_PASSPHRASE" in result.stderr
    assert "Traceback" not in result.stderr
    assert {h.container: fingerprints(lab, h) for h in lab.hosts if h.ssh_port} == before


def test_dry_run_shows_diffs_and_changes_nothing(lab: Lab, inventory: Path) -> None:
    before = {h.container: fingerprints(lab, h) for h in lab.hosts if h.ssh_port}
    result = fab("provision", "--inventory", str(inventory), "--dry-run")
    assert result.returncode == 0, result.stderr
    assert '+HTTP_PROXY="http://proxy.lab.test:3128"' in result.stdout
    assert "+++ /etc/replicated.conf (new)" in result.stdout
    assert "would download http://vendor.lab.test/init-services.sh" in result.stdout
    assert {h.container: fingerprints(lab, h) for h in lab.hosts if h.ssh_port} == before
    assert lab.exec(lab.services().container, "ls /var/lib/ccie-remote", check=False).returncode


def test_first_run_provisions_every_host_in_order(lab: Lab, inventory: Path) -> None:
    services, docker_builder, plain_builder, spare = lab.services(), *lab.builders()
    # Sample every process's command line on a builder while the run goes on.
    lab.exec(
        plain_builder.container,
        "nohup sh -c 'echo $$ > /tmp/ps.pid; while :; do ps -eo args; done' >/tmp/ps.log 2>&1 &",
    )
    started = now()
    result = fab("provision", "--inventory", str(inventory))
    lab.exec(plain_builder.container, "kill $(cat /tmp/ps.pid)")
    assert result.returncode == 0, result.stdout + result.stderr

    rows = summary_rows(result.stdout)
    assert {h: r[1] for h, r in rows.items()} == {
        name(services): "changed",
        name(docker_builder): "changed",
        name(plain_builder): "changed",
    }
    assert "fab tunnel services --inventory" in result.stdout

    # One connection per host; a builder's work in two commands: read, then change and install.
    assert ssh_counts(services.container, started)[0] == 1
    for builder in (docker_builder, plain_builder):
        assert ssh_counts(builder.container, started) == (1, 2)

    # Every host: the managed block, both cases, values from the inventory.
    for host in (services, docker_builder, plain_builder):
        values = parse_environment(read(lab, host, "/etc/environment"))
        assert values["HTTP_PROXY"] == values["http_proxy"] == "http://proxy.lab.test:3128"
        assert values["NO_PROXY"].split(",")[:4] == [
            "localhost",
            "127.0.0.1",
            services.fleet_ip,
            "ghe.lab.test",
        ]
        assert "-Dhttp.proxyHost=proxy.lab.test -Dhttp.proxyPort=3128" in values["JVM_OPTS"]

    # The services box: replicated.conf, the installer's answers on a terminal, the daemon.
    conf = json.loads(read(lab, services, "/etc/replicated.conf"))
    assert conf == {"HttpProxy": "http://proxy.lab.test:3128"}
    record = json.loads(read(lab, services, "/var/lib/lab/init-services.json"))
    assert record["tty"] is True and record["uid"] == 0
    assert record["answers"] == {
        "requires_proxy": "y",
        "proxy_address": "http://proxy.lab.test:3128",
    }
    assert record["environment"]["HTTPS_PROXY"] == "http://proxy.lab.test:3128"
    assert "-e HTTP_PROXY=http://proxy.lab.test:3128" in read(
        lab, services, "/etc/default/replicated"
    )

    # Builders: the passphrase and the services box's address reached the installer.
    for builder in (docker_builder, plain_builder):
        seen = json.loads(read(lab, builder, "/var/lib/lab/init-builder.json"))
        assert seen["services_private_ip"] == services.fleet_ip
        assert seen["services_saw"] == seen["own_address"] == builder.fleet_ip
        assert seen["passphrase_sha256"] == sha256(PASSPHRASE)
        assert seen["uid"] == 0

    # The Docker drop-in only where docker = true, and Docker restarted there.
    assert (
        fingerprints(lab, docker_builder)["/etc/systemd/system/docker.service.d/http-proxy.conf"]
        != "absent"
    )
    assert (
        fingerprints(lab, plain_builder)["/etc/systemd/system/docker.service.d/http-proxy.conf"]
        == "absent"
    )
    assert "docker restart" in events(lab, docker_builder)
    assert events(lab, spare) == [] and set(fingerprints(lab, spare).values()) == {
        fingerprints(lab, spare)["/etc/environment"],
        "absent",
    }

    # Order: the services installer finished before any builder installer started.
    timeline = lab.events()
    services_done = next(
        e.time for e in timeline if e.source == "init-services" and e.action == "finished"
    )
    builder_starts = [
        e.time for e in timeline if e.source == "init-builder" and e.action == "start"
    ]
    assert len(builder_starts) == 2 and min(builder_starts) > services_done

    # The passphrase: not in any command line, any file left on a host, or the output.
    ps_log = read(lab, plain_builder, "/tmp/ps.log")
    assert "init-builder" in ps_log  # the sampler did see the installer run
    assert PASSPHRASE not in ps_log
    assert PASSPHRASE not in result.stdout + result.stderr
    for host in (services, docker_builder, plain_builder):
        found = lab.exec(
            host.container,
            f"grep -rIl -- '{PASSPHRASE}' /etc /var /root /home /tmp --exclude=ps.log",
            check=False,
        )
        assert found.stdout == "", found.stdout

    # Builders fetched through the proxy.
    clients = {request.client for request in lab.proxy_requests()}
    assert {docker_builder.fleet_ip, plain_builder.fleet_ip} <= clients


def test_second_run_changes_nothing(lab: Lab, inventory: Path) -> None:
    hosts = [lab.services(), *lab.builders()[:2]]
    before = {h.container: (fingerprints(lab, h), events(lab, h)) for h in hosts}
    backups = lab.exec(hosts[0].container, "ls /var/lib/ccie-remote/backups").stdout
    started = now()
    result = fab("provision", "--inventory", str(inventory))
    assert result.returncode == 0, result.stderr
    rows = summary_rows(result.stdout)
    assert {r[1] for r in rows.values()} == {"unchanged"}
    assert all("already in step" in r[3] for r in rows.values())
    assert {h.container: (fingerprints(lab, h), events(lab, h)) for h in hosts} == before
    assert lab.exec(hosts[0].container, "ls /var/lib/ccie-remote/backups").stdout == backups
    # An unchanged host costs one connection and one command.
    assert all(ssh_counts(h.container, started) == (1, 1) for h in hosts)


def test_proxy_change_updates_files_and_restarts_without_reinstalling(
    lab: Lab, inventory: Path, tmp_path: Path
) -> None:
    services, docker_builder, _, _ = lab.services(), *lab.builders()
    proxy_ip = lab.proxy().fleet_ip
    changed = tmp_path / "changed.toml"
    changed.write_text(
        inventory.read_text().replace(
            'http = "http://proxy.lab.test:3128"', f'http = "http://{proxy_ip}:3128"'
        )
    )
    services_events = len(events(lab, services))
    result = fab("provision", "--inventory", str(changed))
    assert result.returncode == 0, result.stdout + result.stderr
    assert {r[1] for r in summary_rows(result.stdout).values()} == {"changed"}

    new_events = events(lab, services)[services_events:]
    assert new_events == [
        "replicated stop",
        "replicated-agent stop",
        "replicated-agent start",
        "replicated start",
    ]
    assert f"-e HTTP_PROXY=http://{proxy_ip}:3128" in read(
        lab, services, "/etc/default/replicated"
    )
    assert json.loads(read(lab, services, "/etc/replicated.conf"))["HttpProxy"] == (
        f"http://{proxy_ip}:3128"
    )
    assert events(lab, docker_builder).count("docker restart") == 2
    assert not any("init-" in e for e in new_events)

    again = fab("provision", "--inventory", str(changed))
    assert {r[1] for r in summary_rows(again.stdout).values()} == {"unchanged"}
    # Back to the module's inventory for the tests that follow.
    assert fab("provision", "--inventory", str(inventory)).returncode == 0


def test_host_key_policies(lab: Lab, inventory: Path, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    text = inventory.read_text()
    strict = tmp_path / "strict.toml"
    strict.write_text(text.replace(str(lab.known_hosts), str(empty)))
    refused = fab("provision", "--inventory", str(strict), "--dry-run")
    assert refused.returncode == 1
    assert f"{name(lab.services())}" in refused.stdout and "unknown host key ssh-ed25519" in (
        refused.stdout
    )
    assert "no host was changed" in refused.stderr

    accept = tmp_path / "accept.toml"
    accept.write_text(strict.read_text().replace('"strict"', '"accept-new"'))
    accepted = fab("provision", "--inventory", str(accept), "--dry-run")
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    recorded = empty.read_text().splitlines()
    assert len(recorded) == 3 and all(line.startswith("[127.0.0.1]:") for line in recorded)
    assert fab("provision", "--inventory", str(accept), "--dry-run").returncode == 0
    assert len(empty.read_text().splitlines()) == 3


def test_tunnel_serves_the_console(lab: Lab, inventory: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        busy = fab("tunnel", "services", "--inventory", str(inventory), "--local-port", str(port))
    assert busy.returncode == 2 and "busy" in busy.stderr and "--local-port" in busy.stderr

    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fabric",
            "tunnel",
            "services",
            "--inventory",
            str(inventory),
            "--local-port",
            str(port),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert "tunnel open" in process.stdout.readline()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as page:
            assert "Replicated console" in page.read().decode()
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=20)
    assert process.returncode == 0, err
    assert "tunnel closed" in out


def test_builders_add_keeps_comments_and_touches_only_the_new_host(
    lab: Lab, inventory: Path
) -> None:
    spare = lab.builders()[2]
    others = [lab.services(), *lab.builders()[:2]]
    before = {h.container: (fingerprints(lab, h), events(lab, h)) for h in others}
    original = inventory.read_text()

    duplicate = fab(
        "builders.add",
        "127.0.0.1",
        "--port",
        str(lab.builders()[0].ssh_port),
        "--inventory",
        str(inventory),
    )
    assert duplicate.returncode == 2 and "duplicate host" in duplicate.stderr
    invalid = fab("builders.add", "bad;host", "--inventory", str(inventory))
    assert invalid.returncode == 2 and "not a valid host name" in invalid.stderr
    assert inventory.read_text() == original

    result = fab(
        "builders.add",
        "127.0.0.1",
        "--port",
        str(spare.ssh_port),
        "--private-ip",
        str(spare.fleet_ip),
        "--inventory",
        str(inventory),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    text = inventory.read_text()
    changes = [
        line
        for line in difflib.ndiff(original.splitlines(), text.splitlines())
        if line.startswith(("+ ", "- ")) and line.strip() not in ("+", "-")
    ]
    assert changes == [
        "+ [[builders]]",
        '+ host = "127.0.0.1"',
        f"+ port = {spare.ssh_port}",
        f'+ private_ip = "{spare.fleet_ip}"',
    ]
    assert tomllib.loads(text)["builders"][-1] == {
        "host": "127.0.0.1",
        "port": spare.ssh_port,
        "private_ip": spare.fleet_ip,
    }
    assert summary_rows(result.stdout)[name(spare)][1] == "changed"
    assert "init-builder finished" in events(lab, spare)
    assert {h.container: (fingerprints(lab, h), events(lab, h)) for h in others} == before


def test_builders_add_needs_a_provisioned_services_box(lab_factory: LabFactory) -> None:
    fresh = lab_factory(builders=1)
    original = fresh.inventory_path.read_text()
    result = fab(
        "builders.add", "127.0.0.1", "--port", "1", "--inventory", str(fresh.inventory_path)
    )
    assert result.returncode == 2
    assert "not provisioned yet" in result.stderr and "fab provision" in result.stderr
    assert fresh.inventory_path.read_text() == original


def test_changed_host_key_is_refused(lab: Lab, inventory: Path) -> None:
    builder = lab.builders()[0]
    lab.exec(builder.container, "rm /etc/ssh/ssh_host_* && ssh-keygen -qA && pkill -HUP -x sshd")
    result = fab("provision", "--inventory", str(inventory))
    assert result.returncode == 1
    row = summary_rows(result.stdout)[name(builder)]
    assert row[1] == "failed" and "host key changed" in row[3] and "SHA256:" in row[3]


def test_a_stopped_builder_fails_alone(lab: Lab, inventory: Path) -> None:
    stopped = lab.builders()[1]
    lab.exec(stopped.container, "true")
    subprocess.run(
        ["docker", "stop", "-t", "1", stopped.container], check=True, capture_output=True
    )
    wait_for(lambda: _refused(stopped.ssh_port), "the builder's port to close")
    result = fab(
        "provision",
        "--inventory",
        str(inventory),
        "--only",
        name(lab.services()),
        "--only",
        name(stopped),
        "--only",
        name(lab.builders()[2]),
    )
    assert result.returncode == 1
    rows = summary_rows(result.stdout)
    assert rows[name(stopped)][1] == "failed" and "cannot connect" in rows[name(stopped)][3]
    assert rows[name(lab.services())][1] == "unchanged"
    assert rows[name(lab.builders()[2])][1] == "unchanged"


def _refused(port: int | None) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port or 0), timeout=1) as sock:
            sock.settimeout(1)
            return sock.recv(10) == b""
    except OSError:
        return True


def test_gateway_reaches_builders_on_their_private_addresses(
    lab: Lab, inventory: Path, tmp_path: Path
) -> None:
    """The services box as a jump host: builders addressed by their fleet IP and port 22."""
    document = tomlkit.parse(inventory.read_text())
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(lab.known_hosts.read_text())
    document["ssh"]["gateway"] = f"ubuntu@127.0.0.1:{lab.services().ssh_port}"
    document["ssh"]["known_hosts"] = str(known_hosts)
    document["ssh"]["host_key_policy"] = "accept-new"
    # Every host is addressed as the gateway sees it: its fleet address, port 22.
    document["services"]["host"] = lab.services().fleet_ip
    document["services"]["port"] = 22
    for table, builder in zip(document["builders"], lab.builders(), strict=False):
        table["host"] = builder.fleet_ip
        table["port"] = 22
    through = tmp_path / "gateway.toml"
    through.write_text(tomlkit.dumps(document))

    result = fab(
        "provision",
        "--inventory",
        str(through),
        "--only",
        lab.builders()[0].fleet_ip or "",
        "--dry-run",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"=== builder {lab.builders()[0].fleet_ip}" in result.stdout
    recorded = known_hosts.read_text().splitlines()
    assert any(line.startswith(f"{lab.builders()[0].fleet_ip} ssh-") for line in recorded)
