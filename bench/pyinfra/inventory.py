"""pyinfra inventory of a lab fleet: the services box and the builders, from the JSON file
bench/run.py renders from lab.toml (path in $BENCH_PYINFRA_FLEET)."""

from __future__ import annotations

import json
import os
from pathlib import Path

_fleet = json.loads(Path(os.environ["BENCH_PYINFRA_FLEET"]).read_text(encoding="utf-8"))
_shared = {k: v for k, v in _fleet.items() if k != "hosts"}
_ssh = {
    "ssh_hostname": "127.0.0.1",
    "ssh_user": _fleet["ssh_user"],
    "ssh_key": _fleet["ssh_key"],
    "ssh_known_hosts_file": _fleet["known_hosts"],
    "ssh_strict_host_key_checking": "yes",
    "ssh_look_for_keys": False,
    "ssh_allow_agent": False,
}


def _group(role: str) -> list[tuple[str, dict[str, object]]]:
    return [
        (h["name"], {**_shared, **_ssh, "ssh_port": h["port"], "docker": h["docker"]})
        for h in _fleet["hosts"]
        if h["role"] == role
    ]


services = _group("services")
builders = _group("builder")
