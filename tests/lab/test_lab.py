"""The lab itself: real sshd containers behind a real proxy, and stand-in installers that
refuse what the real ones refuse. Later lab tests trust what these prove."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import stat
import tomllib
from pathlib import Path

import pytest

from ccie_remote.errors import LabError
from ccie_remote.lab import Lab, LabHost, ProxyRequest, down, load, status, wait_for
from ccie_remote.lab.docker import docker

from ..conftest import LabFactory

pytestmark = pytest.mark.lab

LAB = {"builders": 2, "docker_builders": 1}
PROXY = "http://proxy.lab.test:3128"
PROBE = "http://vendor.lab.test/probe.txt"
PASSPHRASE = "correct horse lab passphrase"
PROXY_EXPORTS = " ".join(
    f"{name}={PROXY}" for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy")
)


def fetch(lab: Lab, host: LabHost, script: str) -> str:
    """Download a stand-in installer through the proxy into HOST's /tmp; return its path."""
    path = f"/tmp/{script}"
    lab.exec(host.container, f"curl -fsS -x {PROXY} -o {path} http://vendor.lab.test/{script}")
    return path


def read_json(lab: Lab, host: LabHost, path: str) -> dict[str, object]:
    record: dict[str, object] = json.loads(lab.exec(host.container, f"cat {path}").stdout)
    return record


@pytest.fixture(scope="module")
def corporate_lab(lab_factory: LabFactory) -> Lab:
    return lab_factory(builders=1, corporate=True)


@pytest.fixture(scope="module")
def installed_services(lab: Lab) -> LabHost:
    """The services box after `sudo -E bash init-services.sh`, as the vendor guide has it."""
    services = lab.services()
    script = fetch(lab, services, "init-services.sh")
    lab.exec(services.container, f"""echo '{{"HttpProxy": "{PROXY}"}}' > /etc/replicated.conf""")
    result = lab.ssh(services, f"export {PROXY_EXPORTS} NO_PROXY=127.0.0.1; sudo -E bash {script}")
    assert result.ok, result.stderr
    return services


def test_up_writes_a_complete_inventory(lab: Lab) -> None:
    text = lab.inventory_path.read_text(encoding="utf-8")
    inventory = tomllib.loads(text)
    services = lab.services()

    assert text.startswith("# Written by `fab lab.up`")
    assert inventory["proxy"] == {"http": PROXY, "corporate": False}
    assert inventory["github"] == {"host": "ghe.lab.test"}
    assert inventory["ssh"] == {
        "user": "ubuntu",
        "key_file": str(lab.key_file),
        "known_hosts": str(lab.known_hosts),
        "host_key_policy": "strict",
    }
    assert inventory["services"] == {
        "host": "127.0.0.1",
        "port": services.ssh_port,
        "private_ip": services.fleet_ip,
    }
    assert inventory["builders"] == [
        {"host": "127.0.0.1", "port": b.ssh_port, "private_ip": b.fleet_ip, "docker": b.docker}
        for b in lab.builders()
    ]
    assert [b.docker for b in lab.builders()] == [True, False]
    assert inventory["install"] == {
        "services_script": "http://vendor.lab.test/init-services.sh",
        "builder_script": "http://vendor.lab.test/init-builder-0.2.sh",
    }
    assert stat.S_IMODE(lab.key_file.stat().st_mode) == 0o600


def test_load_reads_the_running_lab_back(lab: Lab) -> None:
    assert load(lab.name) == lab
    rows = status(lab.name)
    assert {row["name"] for row in rows} == {h.container for h in lab.hosts} | {
        f"{lab.name}-fleet",
        f"{lab.name}-outside",
    }
    assert all(row["state"] in {"running", "bridge", "internal"} for row in rows)


def test_ssh_logs_in_with_the_lab_key_and_passwordless_sudo(lab: Lab) -> None:
    for host in [lab.services(), *lab.builders()]:
        assert lab.ssh(host, "id -un; sudo -n id -u").stdout.split() == ["ubuntu", "0"]


def test_known_hosts_holds_each_hosts_own_key(lab: Lab, tmp_path: Path) -> None:
    services, builder = lab.services(), lab.builders()[0]
    entries = lab.known_hosts.read_text(encoding="utf-8").splitlines()
    ports = sorted(line.split()[0] for line in entries)
    assert ports == sorted(f"[127.0.0.1]:{h.ssh_port}" for h in lab.hosts if h.ssh_port)

    # The services box's key filed under a builder's port must be refused.
    services_key = next(e for e in entries if e.startswith(f"[127.0.0.1]:{services.ssh_port} "))
    swapped = tmp_path / "known_hosts"
    swapped.write_text(
        services_key.replace(f":{services.ssh_port} ", f":{builder.ssh_port} ") + "\n"
    )
    with pytest.raises(LabError, match="SSH as ubuntu failed"):
        dataclasses.replace(lab, known_hosts=swapped).ssh(builder, "true")


def test_etc_environment_reaches_ssh_sessions_and_sudo(lab: Lab) -> None:
    builder = lab.builders()[1]
    lab.exec(
        builder.container,
        "cp /etc/environment /tmp/environment.orig"
        " && echo 'LAB_MARK=\"from etc environment\"' >> /etc/environment",
    )
    try:
        seen = lab.ssh(
            builder, "export LAB_EXPORTED=1; env; echo ---; sudo env; echo ---; sudo -E env"
        )
    finally:
        lab.exec(builder.container, "cp /tmp/environment.orig /etc/environment")

    session, under_sudo, under_sudo_e = (part.splitlines() for part in seen.stdout.split("---\n"))
    assert "LAB_MARK=from etc environment" in session
    assert "LAB_MARK=from etc environment" in under_sudo
    assert "LAB_EXPORTED=1" not in under_sudo
    assert "LAB_EXPORTED=1" in under_sudo_e


def test_proxy_logs_a_builder_request_with_its_address_and_url(lab: Lab) -> None:
    builder = lab.builders()[0]

    page = lab.exec(builder.container, f"curl -fsS -x {PROXY} {PROBE}").stdout

    assert "reached vendor.lab.test" in page
    wait_for(
        lambda: ProxyRequest(str(builder.fleet_ip), "GET", PROBE) in lab.proxy_requests(),
        "the proxy's log of the builder's request",
        timeout=10,
    )


def test_outside_is_reached_through_the_proxy_and_s3_directly(lab: Lab) -> None:
    builder = lab.builders()[0]

    direct = lab.exec(builder.container, f"curl -fsS --max-time 5 {PROBE}", check=False)
    bypass = lab.exec(builder.container, "curl -fsS --max-time 5 http://s3.lab.test/probe.txt")

    assert direct.returncode != 0
    assert "reached vendor.lab.test" in bypass.stdout
    wait_for(
        lambda: f"{builder.fleet_ip} - - " in lab.web_log(),
        "the web's log line for the builder's direct request",
        timeout=10,
    )


def test_corporate_builder_reaches_the_web_only_through_the_proxy(corporate_lab: Lab) -> None:
    lab = corporate_lab
    builder = lab.builders()[0]
    web_address = lab.exec(lab.web().container, "hostname -i").stdout.split()[0]

    by_address = lab.exec(
        builder.container,
        f"curl -fsS --connect-timeout 2 http://{web_address}/probe.txt",
        check=False,
    )
    by_s3_name = lab.exec(
        builder.container, "curl -fsS --max-time 5 http://s3.lab.test/", check=False
    )
    proxied = lab.exec(builder.container, f"curl -fsS -x {PROXY} {PROBE}")

    assert lab.corporate and lab.web().fleet_ip is None
    assert by_address.returncode != 0
    assert by_s3_name.returncode != 0
    assert "reached vendor.lab.test" in proxied.stdout


def test_services_installer_refuses_an_address_without_scheme(lab: Lab) -> None:
    services = lab.services()
    script = fetch(lab, services, "init-services.sh")

    result = lab.exec(
        services.container,
        f"HTTP_PROXY=proxy.lab.test:3128 bash {script} < /dev/null",
        check=False,
    )

    assert result.returncode != 0
    assert "<protocol>://<ip>:<port>" in result.stderr


def test_services_installer_reads_its_answers_from_the_terminal(lab: Lab) -> None:
    services = lab.services()
    script = fetch(lab, services, "init-services.sh")
    # `script` gives the installer a terminal and types into it what printf sends.
    typed = "printf 'y\\nproxy.lab.test:3128\\n'"

    result = lab.exec(
        services.container,
        f"export {PROXY_EXPORTS}; {typed} | script -qec 'bash {script}' /dev/null",
        check=False,
    )

    assert result.returncode != 0
    assert "Does this machine require a proxy to access the Internet? (y/N) " in result.stdout
    assert "Enter desired HTTP proxy address: " in result.stdout
    assert "'proxy.lab.test:3128' has no scheme" in result.stdout


def test_services_installer_must_run_as_root(lab: Lab) -> None:
    services = lab.services()
    script = fetch(lab, services, "init-services.sh")

    result = lab.ssh(services, f"export {PROXY_EXPORTS}; bash {script}")

    assert not result.ok and "must run as root" in result.stderr


def test_services_installer_needs_the_proxy_variables_under_sudo(lab: Lab) -> None:
    services = lab.services()
    script = fetch(lab, services, "init-services.sh")
    lab.exec(services.container, f"""echo '{{"HttpProxy": "{PROXY}"}}' > /etc/replicated.conf""")

    result = lab.ssh(services, f"export {PROXY_EXPORTS}; sudo bash {script}")

    assert not result.ok
    assert "sudo -E" in result.stderr
    assert "missing from the installer's environment" in result.stderr


def test_services_installer_installs_the_replicated_stand_in(
    lab: Lab, installed_services: LabHost
) -> None:
    services = installed_services
    console = "curl --noproxy '*' -fsS http://127.0.0.1:8800/"
    record = read_json(lab, services, "/var/lib/lab/init-services.json")
    defaults = lab.exec(services.container, "cat /etc/default/replicated").stdout

    assert "Replicated console (ccie-remote lab)" in lab.exec(services.container, console).stdout
    listening = lab.exec(services.container, "ss -Hltn 'sport = :8800'").stdout
    assert "127.0.0.1:8800" in listening
    assert defaults == (
        f'REPLICATED_OPTS="-e HTTP_PROXY={PROXY} -e HTTPS_PROXY={PROXY} -e NO_PROXY=127.0.0.1"\n'
    )
    assert record["uid"] == 0 and record["tty"] is False
    assert record["answers"] == {"requires_proxy": "y", "proxy_address": PROXY}
    assert record["proxy_used"] == PROXY
    assert record["environment"] == {
        "HTTP_PROXY": PROXY,
        "http_proxy": PROXY,
        "HTTPS_PROXY": PROXY,
        "https_proxy": PROXY,
        "NO_PROXY": "127.0.0.1",
        "no_proxy": None,
    }

    # `service replicated stop` stops the console; start brings it back, reading the proxy
    # from /etc/default/replicated.
    lab.exec(services.container, "service replicated stop")
    assert lab.exec(services.container, console, check=False).returncode != 0
    lab.exec(services.container, "service replicated start")
    wait_for(lambda: lab.exec(services.container, console, check=False).returncode == 0, "console")
    starts = [
        e
        for e in lab.events(services.container)
        if e.source == "replicated" and e.action == "start"
    ]
    assert starts[-1].fields["HTTP_PROXY"] == PROXY


def test_builder_installer_refuses_to_run_without_its_variables(lab: Lab) -> None:
    builder = lab.builders()[0]
    script = fetch(lab, builder, "init-builder-0.2.sh")

    no_passphrase = lab.exec(
        builder.container, f"SERVICES_PRIVATE_IP=10.0.0.1 bash {script}", check=False
    )
    no_services = lab.exec(
        builder.container, f"CIRCLE_SECRET_PASSPHRASE=x bash {script}", check=False
    )
    not_root = lab.ssh(
        builder, f"CIRCLE_SECRET_PASSPHRASE=x SERVICES_PRIVATE_IP=10.0.0.1 bash {script}"
    )

    assert no_passphrase.returncode != 0 and "CIRCLE_SECRET_PASSPHRASE" in no_passphrase.stderr
    assert no_services.returncode != 0 and "SERVICES_PRIVATE_IP" in no_services.stderr
    assert not not_root.ok and "must run as root" in not_root.stderr


def test_builder_installer_reaches_the_services_box_directly(
    lab: Lab, installed_services: LabHost
) -> None:
    builder = lab.builders()[1]
    services_ip = str(installed_services.fleet_ip)
    install = (
        f"curl -fsS -x {PROXY} http://vendor.lab.test/init-builder-0.2.sh"
        f" | CIRCLE_SECRET_PASSPHRASE='{PASSPHRASE}' SERVICES_PRIVATE_IP={services_ip} bash"
    )

    proxied = lab.exec(builder.container, f"export {PROXY_EXPORTS}; {install}", check=False)
    bypassed = lab.exec(
        builder.container,
        f"export {PROXY_EXPORTS} NO_PROXY={services_ip} no_proxy={services_ip}; {install}",
    )

    assert proxied.returncode != 0 and "went through the proxy" in proxied.stderr
    assert "installed" in bypassed.stdout
    raw = lab.exec(builder.container, "cat /var/lib/lab/init-builder.json").stdout
    record = json.loads(raw)
    assert PASSPHRASE not in raw
    assert record["passphrase_sha256"] == hashlib.sha256(PASSPHRASE.encode()).hexdigest()
    assert record["services_private_ip"] == services_ip
    assert record["services_saw"] == builder.fleet_ip

    # One clock for every host: the services install finished before the builder's began.
    events = [e for e in lab.events() if e.action in {"start", "finished"}]
    order = [(e.host, e.source, e.action) for e in events if e.source.startswith("init-")]
    assert order.index(("services", "init-services", "finished")) < order.index(
        (f"builder-{lab.builders().index(builder)}", "init-builder", "finished")
    )


def test_docker_builder_records_the_proxy_its_drop_in_gives(lab: Lab) -> None:
    with_docker, without_docker = lab.builders()
    drop_in = (
        "mkdir -p /etc/systemd/system/docker.service.d && printf '%s\\n' '[Service]'"
        f' \'Environment="HTTP_PROXY={PROXY}" "NO_PROXY=10.0.0.1,%%s"\''
        " > /etc/systemd/system/docker.service.d/http-proxy.conf"
    )

    lab.exec(with_docker.container, f"{drop_in} && systemctl daemon-reload")
    lab.exec(with_docker.container, "service docker restart")
    missing = lab.exec(without_docker.container, "service docker restart", check=False)

    events = lab.events(with_docker.container)
    assert [(e.source, e.action) for e in events][-2:] == [
        ("systemd", "daemon-reload"),
        ("docker", "restart"),
    ]
    assert events[-1].fields == {"HTTP_PROXY": PROXY, "HTTPS_PROXY": "", "NO_PROXY": "10.0.0.1,%s"}
    assert missing.returncode != 0


def test_down_removes_exactly_the_labs_objects(lab: Lab, lab_factory: LabFactory) -> None:
    small = lab_factory(builders=0)
    decoy = f"{small.name}-decoy"
    docker("network", "create", "--label", f"ccie-remote.lab={small.name}x", decoy)
    try:
        removed = down(small.name)
        still_there = docker("network", "ls", "--format", "{{.Name}}").stdout.split()
    finally:
        docker("network", "rm", decoy)

    expected = {h.container for h in small.hosts} | {
        f"{small.name}-fleet",
        f"{small.name}-outside",
    }
    assert set(removed) == expected
    assert status(small.name) == []
    assert decoy in still_there
    assert load(lab.name) == lab
