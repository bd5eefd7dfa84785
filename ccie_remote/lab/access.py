"""The files that let the tool reach a lab: its key pair, its known_hosts and lab.toml."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import tomlkit
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ccie_remote.errors import LabError
from ccie_remote.lab.model import SSH_USER, Lab

KEY_NAME = "id_ed25519"
PROXY_URL = "http://proxy.lab.test:3128"
GITHUB_HOST = "ghe.lab.test"
SERVICES_SCRIPT = "http://vendor.lab.test/init-services.sh"
BUILDER_SCRIPT = "http://vendor.lab.test/init-builder-0.2.sh"


def make_key_pair(lab_dir: Path, comment: str) -> tuple[Path, str]:
    """A fresh ed25519 key pair in LAB_DIR; returns the private key's path and the public key."""
    lab_dir.mkdir(parents=True, exist_ok=True)
    private = lab_dir / KEY_NAME
    public = lab_dir / f"{KEY_NAME}.pub"
    for stale in (private, public):
        stale.unlink(missing_ok=True)

    if shutil.which("ssh-keygen"):
        keygen_pair(private, comment)
    else:
        python_pair(private, public, comment)

    private.chmod(0o600)
    return private, public.read_text(encoding="utf-8").strip()


def keygen_pair(private: Path, comment: str) -> None:
    """ssh-keygen writes PRIVATE and PRIVATE.pub."""
    command = ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(private)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise LabError(f"ssh-keygen could not write {private}: {result.stderr.strip()}")


def python_pair(private: Path, public: Path, comment: str) -> None:
    """Without ssh-keygen: the same OpenSSH files, made with cryptography (paramiko's own)."""
    key = Ed25519PrivateKey.generate()
    private_text = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public_text = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH,
        serialization.PublicFormat.OpenSSH,
    )
    descriptor = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(private_text)
    public.write_text(f"{public_text.decode()} {comment}\n", encoding="utf-8")


def known_hosts_line(port: int, host_key: str) -> str:
    """The known_hosts entry for HOST_KEY served on 127.0.0.1:PORT, without its comment."""
    key_type, key_data = host_key.split()[:2]
    return f"[127.0.0.1]:{port} {key_type} {key_data}"


def write_known_hosts(path: Path, lines: list[str]) -> None:
    """Write the lab's known_hosts, one line per SSH host."""
    write_atomically(path, "".join(f"{line}\n" for line in lines))


def inventory_text(lab: Lab) -> str:
    """lab.toml: a complete inventory of the lab, in the tool's schema."""
    doc = tomlkit.document()
    doc.add(tomlkit.comment(f"Written by `fab lab.up` for the lab {lab.name!r}: a rehearsal"))
    doc.add(tomlkit.comment("fleet of sshd containers behind a real proxy. The next `fab lab.up`"))
    doc.add(tomlkit.comment("rewrites it; `fab lab.down` leaves it in place."))
    doc.add(tomlkit.nl())

    doc["proxy"] = table({"http": PROXY_URL, "corporate": lab.corporate})
    doc["github"] = table({"host": GITHUB_HOST})
    doc["ssh"] = table(
        {
            "user": SSH_USER,
            "key_file": str(lab.key_file),
            "known_hosts": str(lab.known_hosts),
            "host_key_policy": "strict",
        }
    )

    services = lab.services()
    doc["services"] = table(
        {"host": "127.0.0.1", "port": services.ssh_port, "private_ip": services.fleet_ip}
    )
    builders = tomlkit.aot()
    for builder in lab.builders():
        builders.append(
            table(
                {
                    "host": "127.0.0.1",
                    "port": builder.ssh_port,
                    "private_ip": builder.fleet_ip,
                    "docker": builder.docker,
                }
            )
        )
    doc["builders"] = builders
    doc["install"] = table({"services_script": SERVICES_SCRIPT, "builder_script": BUILDER_SCRIPT})
    return tomlkit.dumps(doc)


def write_inventory(lab: Lab) -> None:
    """Write lab.toml where the lab says it lives."""
    write_atomically(lab.inventory_path, inventory_text(lab))


def table(values: dict[str, object]) -> tomlkit.items.Table:
    """A TOML table holding VALUES in their order."""
    made = tomlkit.table()
    for key, value in values.items():
        made[key] = value
    return made


def write_atomically(path: Path, text: str) -> None:
    """Replace PATH with TEXT so that a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)
