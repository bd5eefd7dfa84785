"""The floor: one SSH connection and one read per host, all at once, then exit.

No tool that connects to every host and reads its state can finish faster than this script,
which is run as a process of its own so that the interpreter's start-up is counted too:

    python bench/floor.py lab.toml
"""

from __future__ import annotations

import sys
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import paramiko


def hosts(inventory_path: Path) -> list[tuple[str, int]]:
    """(address, port) of the services box and every builder, read straight from the TOML."""
    data = tomllib.loads(inventory_path.read_text(encoding="utf-8"))
    tables = [data["services"], *data.get("builders", [])]
    return [(table["host"], int(table.get("port", 22))) for table in tables]


def read_environment(address: str, port: int, ssh: dict[str, str]) -> int:
    """Connect (host key checked), `cat /etc/environment`, and return the bytes read."""
    client = paramiko.SSHClient()
    client.load_host_keys(ssh["known_hosts"])
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        client.connect(
            address,
            port=port,
            username=ssh["user"],
            key_filename=ssh["key_file"],
            look_for_keys=False,
            allow_agent=False,
            timeout=10,
        )
        _, stdout, _ = client.exec_command("cat /etc/environment")
        data = stdout.read()
        if stdout.channel.recv_exit_status() != 0:
            raise RuntimeError(f"{address}:{port}: cat /etc/environment failed")
        return len(data)
    finally:
        client.close()


def main(argv: list[str]) -> int:
    inventory_path = Path(argv[1])
    ssh = tomllib.loads(inventory_path.read_text(encoding="utf-8"))["ssh"]
    targets = hosts(inventory_path)
    with ThreadPoolExecutor(max_workers=len(targets)) as pool:
        sizes = list(pool.map(lambda target: read_environment(target[0], target[1], ssh), targets))
    print(f"{len(sizes)} hosts read, {sum(sizes)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
