"""`fab userdata` end to end: the script run as root on fresh lab builders, as cloud-init would,
gives them what `fab provision` gives a builder."""

from __future__ import annotations

import hashlib
import json

import pytest
import tomlkit

from ccie_remote.lab import Lab, LabHost

from .helpers import PASSPHRASE, fab, fingerprints, read

pytestmark = pytest.mark.lab

# Builders 0 and 1 run Docker; 0 and 2 are provisioned over SSH, 1 and 3 by user data.
LAB = {"builders": 4, "docker_builders": 2}
EARLIER_APPEND = 'HTTP_PROXY=10.0.0.33:3128\nJVM_OPTS="-Dhttp.proxyHost=10.0.0.33 $JVM_OPTS"\n'


def run_as_cloud_init(lab: Lab, host: LabHost, script: str) -> str:
    result = lab.exec(host.container, "bash -s", input=script, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def installer_record(lab: Lab, host: LabHost) -> dict[str, str]:
    record = json.loads(read(lab, host, "/var/lib/lab/init-builder.json"))
    return {k: record[k] for k in ("services_private_ip", "passphrase_sha256", "uid")}


def test_userdata_gives_what_provision_gives(
    lab: Lab, tmp_path_factory: pytest.TempPathFactory
) -> None:
    ssh_docker, data_docker, ssh_plain, data_plain = lab.builders()
    for builder in lab.builders():
        lab.exec(builder.container, f"printf '{EARLIER_APPEND}' >> /etc/environment")

    document = tomlkit.parse(lab.inventory_path.read_text())
    builders = document["builders"]
    del builders[3]
    del builders[1]
    inventory = tmp_path_factory.mktemp("userdata") / "fleet.toml"
    inventory.write_text(tomlkit.dumps(document))
    provisioned = fab("provision", "--inventory", str(inventory))
    assert provisioned.returncode == 0, provisioned.stdout + provisioned.stderr

    plain = fab("userdata", "--inventory", str(inventory))
    docker = fab("userdata", "--inventory", str(inventory), "--docker")
    assert plain.returncode == docker.returncode == 0, plain.stderr + docker.stderr
    assert "metadata service" in plain.stderr  # the embedded passphrase is called out

    for script, by_data, by_ssh in (
        (docker.stdout, data_docker, ssh_docker),
        (plain.stdout, data_plain, ssh_plain),
    ):
        first = run_as_cloud_init(lab, by_data, script)
        assert "wrote /etc/environment" in first
        assert fingerprints(lab, by_data) == fingerprints(lab, by_ssh)
        assert installer_record(lab, by_data) == installer_record(lab, by_ssh)
        assert (
            lab.exec(
                by_data.container, "test -f /var/lib/ccie-remote/installed-builder"
            ).returncode
            == 0
        )
        events = [f"{e.source} {e.action}" for e in lab.events(by_data.container)]
        assert events.count("init-builder finished") == 1
        assert events.count("docker restart") == (1 if by_data.docker else 0)

        before = (fingerprints(lab, by_data), lab.events(by_data.container))
        second = run_as_cloud_init(lab, by_data, script)
        assert "wrote" not in second
        assert (fingerprints(lab, by_data), lab.events(by_data.container)) == before

    record = installer_record(lab, data_plain)
    assert record["services_private_ip"] == lab.services().fleet_ip
    assert PASSPHRASE not in read(lab, data_plain, "/etc/environment")


def test_passphrase_command_runs_on_the_instance(
    lab: Lab, tmp_path_factory: pytest.TempPathFactory
) -> None:
    builder = lab.builders()[3]
    lab.exec(builder.container, "rm -f /var/lib/ccie-remote/installed-builder")
    result = fab(
        "userdata",
        "--inventory",
        str(lab.inventory_path),
        "--passphrase-command",
        "cat /run/secret-passphrase",
        passphrase=None,
    )
    assert result.returncode == 0, result.stderr
    assert "metadata service" not in result.stderr
    lab.exec(builder.container, "umask 077; echo fetched-at-boot > /run/secret-passphrase")
    run_as_cloud_init(lab, builder, result.stdout)
    expected = hashlib.sha256(b"fetched-at-boot").hexdigest()
    assert installer_record(lab, builder)["passphrase_sha256"] == expected
