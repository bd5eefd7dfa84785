"""The three tools under test, and the floor: their inputs, made from one lab's inventory.

Every value a host gets comes from ccie-remote's own renderer, so the Ansible playbook and the
pyinfra deploy write the same settings ccie-remote writes; only the way each tool gets them
onto the hosts differs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import venv
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from ccie_remote import inventory, render  # noqa: E402

VENV = BENCH / ".venv"
REQUIREMENTS = BENCH / "requirements.txt"
TOOLS = ("ccie-remote", "ansible", "pyinfra")
PASSPHRASE = "bench-passphrase-5d1e"
RUN_TIMEOUT = 900

# Where each tool records that it ran an installer (ccie-remote's is its own, fixed).
MARKER_DIRS = {
    "ccie-remote": "/var/lib/ccie-remote",
    "ansible": "/var/lib/bench-ansible",
    "pyinfra": "/var/lib/bench-pyinfra",
}


@dataclass(frozen=True)
class Run:
    """One timed run of a tool: wall-clock seconds from spawn to exit, and where its output is."""

    tool: str
    seconds: float
    exit_code: int
    output: Path

    def tail(self, lines: int = 25) -> str:
        text = self.output.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])


# --- the virtual environment ----------------------------------------------------------------


def ensure_venv() -> Path:
    """bench/.venv with ansible-core and pyinfra from the package index; made when missing."""
    python = VENV / "bin" / "python"
    wanted = [VENV / "bin" / "ansible-playbook", VENV / "bin" / "pyinfra"]
    if all(path.exists() for path in wanted):
        return python
    print(f"making {VENV} (ansible-core and pyinfra from the package index)", flush=True)
    venv.create(VENV, with_pip=True, clear=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True)
    pip_install = [str(python), "-m", "pip", "install", "-q", "-r", str(REQUIREMENTS)]
    subprocess.run(pip_install, check=True)
    return python


def versions() -> dict[str, str]:
    """The version of each tool and of what runs them."""
    found = {"python": sys.version.split()[0]}
    code = "import importlib.metadata as m; print(m.version('{}'))"
    for name, package, python in (
        ("fabric", "fabric", sys.executable),
        ("paramiko (ccie-remote, floor)", "paramiko", sys.executable),
        ("ansible-core", "ansible-core", str(VENV / "bin" / "python")),
        ("pyinfra", "pyinfra", str(VENV / "bin" / "python")),
        ("paramiko (pyinfra)", "paramiko", str(VENV / "bin" / "python")),
    ):
        result = subprocess.run(
            [python, "-c", code.format(package)], capture_output=True, text=True, check=False
        )
        found[name] = result.stdout.strip() or "?"
    ssh = subprocess.run(["ssh", "-V"], capture_output=True, text=True, check=False)
    found["openssh client (ansible)"] = ssh.stderr.strip().split(",")[0]
    return found


# --- inputs, from ccie-remote's renderer ----------------------------------------------------


def fleet_values(inventory_path: Path) -> dict[str, object]:
    """What every tool writes, rendered by ccie-remote from the lab's inventory."""
    fleet = inventory.load(inventory_path)
    block = render.environment_block(fleet).splitlines()
    options = render.replicated_default(fleet, None).strip()
    quoted = re.fullmatch(r'REPLICATED_OPTS="(.*)"', options)
    assert quoted is not None, options
    daemon_options = re.findall(r"-e \S+", quoted[1])
    proxy_env = {
        name: value
        for name, value in render.environment_values(fleet).items()
        if name != "JVM_OPTS"
    }
    hosts = [
        {
            "name": "services-box" if host.role == "services" else f"builder-{index - 1}",
            "role": host.role,
            "port": host.port,
            "private_ip": host.private_ip,
            "docker": host.docker,
        }
        for index, host in enumerate(fleet.hosts)
    ]
    return {
        "environment_lines": block[1:-1],
        "environment_values": render.environment_values(fleet),
        "proxy_env": proxy_env,
        "http_proxy": fleet.proxy.http.url,
        "daemon_options": daemon_options,
        "docker_dropin": render.docker_dropin(fleet),
        "services_script": fleet.install.services_script,
        "builder_script": fleet.install.builder_script,
        "services_private_ip": fleet.services.private_ip,
        "ssh_user": fleet.ssh.user,
        "ssh_key": str(fleet.ssh.key_file),
        "known_hosts": str(fleet.ssh.known_hosts),
        "hosts": hosts,
    }


def ansible_inventory(values: dict[str, object]) -> dict[str, object]:
    """An Ansible YAML inventory (written as JSON, which YAML reads): two groups, all vars."""
    hosts: list[dict[str, object]] = values["hosts"]  # type: ignore[assignment]
    shared = {k: v for k, v in values.items() if k not in ("hosts", "ssh_user", "ssh_key")}
    shared.update(
        ansible_host="127.0.0.1",
        ansible_user=values["ssh_user"],
        ansible_ssh_private_key_file=values["ssh_key"],
        ansible_ssh_common_args=(
            f"-o UserKnownHostsFile={values['known_hosts']} -o StrictHostKeyChecking=yes"
        ),
        ansible_python_interpreter="/usr/bin/python3",
    )

    def group(role: str) -> dict[str, object]:
        members = {
            h["name"]: {"ansible_port": h["port"], "docker": h["docker"]}
            for h in hosts
            if h["role"] == role
        }
        return {"hosts": members}

    return {
        "all": {
            "vars": shared,
            "children": {"services": group("services"), "builders": group("builder")},
        }
    }


def write_inputs(inventory_path: Path, folder: Path) -> dict[str, object]:
    """Write each tool's inputs for this inventory into FOLDER; return the rendered values."""
    folder.mkdir(parents=True, exist_ok=True)
    values = fleet_values(inventory_path)
    (folder / "ansible-inventory.yml").write_text(
        json.dumps(ansible_inventory(values), indent=1), encoding="utf-8"
    )
    (folder / "pyinfra-fleet.json").write_text(json.dumps(values, indent=1), encoding="utf-8")
    return values


# --- running a tool -------------------------------------------------------------------------


def command(
    tool: str, inventory_path: Path, inputs: Path
) -> tuple[list[str], dict[str, str], Path]:
    """The command line, environment and working folder of one run of TOOL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "PYINFRA_"))}
    env["CIRCLE_SECRET_PASSPHRASE"] = PASSPHRASE
    if tool == "ccie-remote":
        return (
            [sys.executable, "-m", "fabric", "provision", "--inventory", str(inventory_path)],
            env,
            REPO,
        )
    if tool == "ansible":
        env["ANSIBLE_CONFIG"] = str(BENCH / "ansible" / "ansible.cfg")
        env["ANSIBLE_SSH_CONTROL_PATH_DIR"] = str(inputs / "ansible-cp")
        env["ANSIBLE_LOCAL_TEMP"] = str(inputs / "ansible-tmp")
        env["ANSIBLE_NOCOLOR"] = "1"
        playbook = BENCH / "ansible" / "provision.yml"
        args = [
            str(VENV / "bin" / "ansible-playbook"),
            "-i",
            str(inputs / "ansible-inventory.yml"),
        ]
        return [*args, str(playbook)], env, BENCH / "ansible"
    if tool == "pyinfra":
        env["BENCH_PYINFRA_FLEET"] = str(inputs / "pyinfra-fleet.json")
        folder = BENCH / "pyinfra"
        args = [str(VENV / "bin" / "pyinfra"), "-y"]
        return [*args, str(folder / "inventory.py"), str(folder / "deploy.py")], env, folder
    raise ValueError(f"unknown tool {tool}")


def run_tool(tool: str, inventory_path: Path, inputs: Path, output: Path) -> Run:
    """Run TOOL once, stdin closed, output to a file; wall-clock time from spawn to exit."""
    args, env, cwd = command(tool, inventory_path, inputs)
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("w", encoding="utf-8") as out:
        started = time.perf_counter()
        process = subprocess.Popen(
            args, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )
        try:
            code = process.wait(timeout=RUN_TIMEOUT)
        finally:
            if process.poll() is None:
                process.kill()
        seconds = time.perf_counter() - started
    if tool == "ansible":
        close_control_masters(inputs / "ansible-cp")
    return Run(tool, seconds, code, output)


def close_control_masters(folder: Path) -> None:
    """End Ansible's ControlPersist masters, so that the next run connects afresh, as ours does."""
    if not folder.is_dir():
        return
    for socket in folder.iterdir():
        subprocess.run(
            ["ssh", "-o", f"ControlPath={socket}", "-O", "exit", "bench-control-master"],
            capture_output=True,
            check=False,
            timeout=10,
        )
    shutil.rmtree(folder, ignore_errors=True)


def run_floor(inventory_path: Path, output: Path) -> Run:
    """The floor: one connection and one read per host, all at once, in a process of its own."""
    args = [sys.executable, str(BENCH / "floor.py"), str(inventory_path)]
    with output.open("w", encoding="utf-8") as out:
        started = time.perf_counter()
        code = subprocess.run(
            args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, check=False
        ).returncode
        seconds = time.perf_counter() - started
    return Run("floor", seconds, code, output)
