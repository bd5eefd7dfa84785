"""The lab's parts that need no Docker engine: parsing, files, the stand-ins' own scripts."""

from __future__ import annotations

import shutil
import stat
import subprocess
import tomllib
from pathlib import Path

import paramiko
import pytest

from ccie_remote.errors import LabError
from ccie_remote.lab import Lab, LabEvent, LabHost, ProxyRequest
from ccie_remote.lab.access import inventory_text, known_hosts_line, python_pair
from ccie_remote.lab.fleet import check_request
from ccie_remote.lab.images import FILES, inputs_digest
from ccie_remote.lab.model import proxy_requests
from ccie_remote.tasks.lab import summary, table

SYSTEMD_ENV = FILES / "rootfs/usr/local/sbin/lab-systemd-env"
SHELL_SCRIPTS = [
    FILES / "www/init-services.sh",
    FILES / "www/init-builder-0.2.sh",
    FILES / "rootfs/usr/local/sbin/lab-entrypoint",
    FILES / "rootfs/usr/local/sbin/lab-event",
    FILES / "rootfs/usr/local/lib/lab/docker.init",
    FILES / "rootfs/usr/local/bin/systemctl",
]


def example_lab(tmp_path: Path) -> Lab:
    return Lab(
        name="parts",
        inventory_path=tmp_path / "lab.toml",
        key_file=tmp_path / "id_ed25519",
        known_hosts=tmp_path / "known_hosts",
        corporate=True,
        hosts=[
            LabHost("services", "parts-services", 40001, "172.30.0.3"),
            LabHost("builder", "parts-builder-0", 40002, "172.30.0.4", docker=True),
            LabHost("builder", "parts-builder-1", 40003, "172.30.0.5"),
            LabHost("proxy", "parts-proxy", None, "172.30.0.6"),
            LabHost("web", "parts-web", None, None),
        ],
    )


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "1700000000.123456789 services replicated start HTTP_PROXY=http://p:3128 NO_PROXY=",
            LabEvent(
                1700000000.123456789,
                "services",
                "replicated",
                "start",
                {"HTTP_PROXY": "http://p:3128", "NO_PROXY": ""},
            ),
        ),
        (
            "1.5 builder-0 systemd daemon-reload",
            LabEvent(1.5, "builder-0", "systemd", "daemon-reload"),
        ),
    ],
)
def test_lab_event_parse(line: str, expected: LabEvent) -> None:
    assert LabEvent.parse(line) == expected


def test_lab_event_refuses_a_short_line() -> None:
    with pytest.raises(LabError, match="unreadable lab event"):
        LabEvent.parse("1.5 services")


def test_proxy_requests_pairs_interleaved_connections() -> None:
    stamp = "CONNECT   Dec 03 17:39:17.643 [7]: "
    log = "\n".join(
        [
            f"{stamp}Connect (file descriptor 6): 172.18.0.4",
            f"{stamp}Connect (file descriptor 8): 172.18.0.5",
            f"{stamp}Request (file descriptor 8): CONNECT s3.lab.test:443 HTTP/1.1",
            "INFO      Dec 03 17:39:17.646 [7]: No upstream proxy for vendor.lab.test",
            f"{stamp}Request (file descriptor 6): GET http://vendor.lab.test/probe.txt HTTP/1.1",
        ]
    )

    assert proxy_requests(log) == [
        ProxyRequest("172.18.0.5", "CONNECT", "s3.lab.test:443"),
        ProxyRequest("172.18.0.4", "GET", "http://vendor.lab.test/probe.txt"),
    ]


def test_known_hosts_line_drops_the_comment() -> None:
    line = known_hosts_line(40001, "ssh-ed25519 AAAAkey root@services\n")
    assert line == "[127.0.0.1]:40001 ssh-ed25519 AAAAkey"


def test_python_key_pair_is_an_openssh_ed25519_pair(tmp_path: Path) -> None:
    private, public = tmp_path / "id_ed25519", tmp_path / "id_ed25519.pub"

    python_pair(private, public, "ccie-remote lab parts")

    key = paramiko.Ed25519Key.from_private_key_file(str(private))
    key_type, key_data, comment = public.read_text().split(" ", 2)
    assert (key_type, key_data) == (key.get_name(), key.get_base64())
    assert comment.strip() == "ccie-remote lab parts"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600


def test_inventory_text_is_the_tools_schema(tmp_path: Path) -> None:
    lab = example_lab(tmp_path)

    inventory = tomllib.loads(inventory_text(lab))

    assert list(inventory) == ["proxy", "github", "ssh", "services", "builders", "install"]
    assert inventory["proxy"] == {"http": "http://proxy.lab.test:3128", "corporate": True}
    assert inventory["services"] == {
        "host": "127.0.0.1",
        "port": 40001,
        "private_ip": "172.30.0.3",
    }
    assert [b["docker"] for b in inventory["builders"]] == [True, False]
    assert inventory["ssh"]["key_file"] == str(tmp_path / "id_ed25519")


@pytest.mark.parametrize(
    ("builders", "docker_builders", "name", "problem"),
    [
        (-1, 0, "lab", "--builders"),
        (1, 2, "lab", "--docker-builders"),
        (1, 0, "Bad Name", "lab name"),
    ],
)
def test_check_request_refuses_an_impossible_lab(
    builders: int, docker_builders: int, name: str, problem: str
) -> None:
    with pytest.raises(LabError, match=problem):
        check_request(name, builders, docker_builders)


def test_inputs_digest_follows_content_and_executable_bit(tmp_path: Path) -> None:
    script = tmp_path / "run.sh"
    script.write_text("echo one\n")
    first = inputs_digest(tmp_path, "sha256:base")

    script.chmod(0o755)
    executable = inputs_digest(tmp_path, "sha256:base")
    script.write_text("echo two\n")
    changed = inputs_digest(tmp_path, "sha256:base")

    assert len({first, executable, changed, inputs_digest(tmp_path, "sha256:other")}) == 4
    assert inputs_digest(tmp_path, "sha256:other") == inputs_digest(tmp_path, "sha256:other")


def test_systemd_drop_in_is_read_as_systemd_reads_it(tmp_path: Path) -> None:
    drop_in = tmp_path / "http-proxy.conf"
    drop_in.write_text(
        "[Unit]\n"
        'Environment="IGNORED=1"\n'
        "[Service]\n"
        '# Environment="COMMENTED=1"\n'
        'Environment="HTTP_PROXY=http://p:3128" "NO_PROXY=a,b"\n'
        "Environment=HTTPS_PROXY=http://p:3128 PERCENT=100%%\n"
    )

    printed = subprocess.run(
        ["python3", str(SYSTEMD_ENV), str(drop_in)], capture_output=True, text=True, check=True
    ).stdout

    assert printed.splitlines() == [
        "HTTP_PROXY=http://p:3128",
        "NO_PROXY=a,b",
        "HTTPS_PROXY=http://p:3128",
        "PERCENT=100%",
    ]


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda path: path.name)
def test_stand_in_scripts_pass_shellcheck(script: Path) -> None:
    result = subprocess.run(["shellcheck", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_task_output_names_hosts_ports_and_next_step(tmp_path: Path) -> None:
    lab = example_lab(tmp_path)

    printed = summary(lab, "lab.toml")
    rows = [{"lab": "parts", "kind": "container", "name": "parts-web", "role": "web"}]
    shown = table([{**rows[0], "state": "running", "ssh": "", "address": ""}])

    assert "parts-builder-0" in printed and "ssh 127.0.0.1:40002" in printed
    assert printed.endswith("next: fab provision --inventory lab.toml")
    assert shown.splitlines()[0].split() == [
        "LAB",
        "KIND",
        "NAME",
        "ROLE",
        "STATE",
        "SSH",
        "ADDRESS",
    ]
