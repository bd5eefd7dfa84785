"""`fab userdata`: the launch-configuration script for builders SSH never reaches."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from invoke import Context, task

from ccie_remote import render
from ccie_remote.tasks.common import friendly, load_fleet
from ccie_remote.tasks.provision import passphrase_source
from ccie_remote.userdata import builder_userdata


@task(
    help={
        "inventory": "inventory file (default $CCIE_INVENTORY, then ./inventory.toml)",
        "docker": "for Docker builders: add the Docker daemon's proxy drop-in",
        "output": "write the script to FILE (mode 0600) instead of printing it",
        "passphrase-command": "a command the instance runs at boot to get the passphrase "
        "(better than embedding it)",
    }
)
@friendly
def userdata(
    c: Context,
    inventory: str | None = None,
    docker: bool = False,
    output: str | None = None,
    passphrase_command: str | None = None,
) -> None:
    """Print the user data script for builders started from a launch configuration."""
    fleet = load_fleet(inventory)
    for warning in render.warnings(fleet):
        print(f"warning: {warning}", file=sys.stderr)
    passphrase = None
    if not passphrase_command:
        passphrase = passphrase_source()()
        print(
            "warning: the passphrase is embedded in the user data, which any process on the "
            "instance can read from the metadata service; prefer --passphrase-command",
            file=sys.stderr,
        )
    script = builder_userdata(
        fleet, docker=docker, passphrase=passphrase, passphrase_command=passphrase_command
    )
    if output is None:
        sys.stdout.write(script)
        return
    path = Path(output)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
        stream.write(script)
    os.chmod(path, 0o600)
    print(f"{path}: user data written (mode 0600)", file=sys.stderr)
