"""What `fab provision` does, as a pyinfra deploy: the services box first, then every builder.

pyinfra runs each operation on all its hosts at once and waits for them before the next, so
the services box's operations (written first) finish before any builder's starts. Every value
comes from host.data, which bench/pyinfra/inventory.py reads from what bench/run.py renders
with ccie-remote's own renderer.

    BENCH_PYINFRA_FLEET=fleet.json CIRCLE_SECRET_PASSPHRASE=... pyinfra -y inventory.py deploy.py
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Generator
from io import StringIO

from pyinfra import host
from pyinfra.api import OperationError, operation
from pyinfra.facts.files import File, FileContents
from pyinfra.operations import files, server

MARKER_DIR = "/var/lib/bench-pyinfra"
ENVIRONMENT = "/etc/environment"
REPLICATED_CONF = "/etc/replicated.conf"
REPLICATED_DEFAULT = "/etc/default/replicated"
DOCKER_DROPIN = "/etc/systemd/system/docker.service.d/http-proxy.conf"
BLOCK_MARKER = "# {mark} bench-pyinfra proxy settings"
OPTIONS_LINE = re.compile(r'^(\s*(?:export\s+)?REPLICATED_OPTS=)(["\']?)(.*?)\2(\s*)$')
PROXY_OPTION = re.compile(r"^(?:HTTP_PROXY|HTTPS_PROXY|NO_PROXY)=", re.IGNORECASE)


@operation()
def json_key(path: str, key: str, value: str, mode: str) -> Generator:
    """A JSON object file with KEY set to VALUE, every other key kept (read when it runs)."""
    lines = host.get_fact(FileContents, path=path)
    text = "\n".join(lines or [])
    settings = json.loads(text) if text.strip() else {}
    if not isinstance(settings, dict):
        raise OperationError(f"{path} holds JSON but not an object")
    if lines is not None and settings.get(key) == value:
        host.noop(f"{path}: {key} already set")
        return
    settings[key] = value
    merged = StringIO(json.dumps(settings, indent=2) + "\n")
    yield from files.put._inner(src=merged, dest=path, mode=mode)


@operation()
def daemon_options(path: str, options: list[str]) -> Generator:
    """The daemon's REPLICATED_OPTS with our proxy options, others kept; only if PATH exists."""
    lines = host.get_fact(FileContents, path=path)
    if lines is None:
        host.noop(f"{path} does not exist")
        return
    wanted = with_options(lines, options)
    if wanted == lines:
        host.noop(f"{path}: proxy options in step")
        return
    yield from files.put._inner(src=StringIO("\n".join(wanted) + "\n"), dest=path, mode="644")


def with_options(lines: list[str], options: list[str]) -> list[str]:
    """LINES with the REPLICATED_OPTS line's proxy options replaced by OPTIONS (appended)."""
    for index, line in enumerate(lines):
        match = OPTIONS_LINE.match(line)
        if match:
            value = " ".join([*without_proxy_options(match[3].split()), *options])
            return [*lines[:index], f'{match[1]}"{value}"', *lines[index + 1 :]]
    return [*lines, f'REPLICATED_OPTS="{" ".join(options)}"']


def without_proxy_options(tokens: list[str]) -> list[str]:
    """The daemon's options less its `-e HTTP_PROXY=`, `-e HTTPS_PROXY=`, `-e NO_PROXY=` ones."""
    kept: list[str] = []
    pending: str | None = None
    for token in tokens:
        if pending is not None:
            if not PROXY_OPTION.match(token):
                kept += [pending, token]
            pending = None
        elif token == "-e":
            pending = token
        else:
            kept.append(token)
    return kept + ([pending] if pending else [])


def not_installed(role: str) -> bool:
    return host.get_fact(File, path=f"{MARKER_DIR}/installed-{role}") is None


# pyinfra orders operations across hosts by each host's own sequence, so operations called only
# for some hosts (under an `if`) may interleave with other hosts' ones. Every host therefore
# calls every operation, in file order, and `_if` (evaluated as the operation runs) picks the
# hosts it is for: the services box's operations all finish before any builder's start.
services = "services" in host.groups
builder = not services
docker = bool(host.data.docker)


def on_services() -> bool:
    return services


def on_builders() -> bool:
    return builder


def on_docker_builders() -> bool:
    return builder and docker


environment = files.block(
    name="Proxy settings in /etc/environment (services box)",
    path=ENVIRONMENT,
    content=host.data.environment_lines,
    marker=BLOCK_MARKER,
    _if=on_services,
)
conf = json_key(
    name="HttpProxy in /etc/replicated.conf, every other key kept",
    path=REPLICATED_CONF,
    key="HttpProxy",
    value=host.data.http_proxy,
    mode="600",
    _if=on_services,
)
services_install = server.shell(
    name="Services installer, unless it ran before",
    commands=[
        f"mkdir -p {MARKER_DIR}"
        f" && curl -fsSL --retry 2 -o {MARKER_DIR}/init-services.sh {host.data.services_script}"
        f" && bash {MARKER_DIR}/init-services.sh < /dev/null"
        f" && touch {MARKER_DIR}/installed-services"
    ],
    _env=host.data.proxy_env,
    _if=[on_services, lambda: not_installed("services")],
)
options = daemon_options(
    name="Proxy options in /etc/default/replicated (only where it exists)",
    path=REPLICATED_DEFAULT,
    options=host.data.daemon_options,
    _if=on_services,
)


def restart_needed() -> bool:
    """Installed before this run and a setting changed, or installed now and the daemon's
    settings (written by the installer) had to be brought in step."""
    if services_install.did_change():
        return options.did_change()
    return any(op.did_change() for op in (environment, conf, options))


server.shell(
    name="Restart replicated in order",
    commands=[
        "service replicated stop",
        "service replicated-agent stop",
        "service replicated-agent start",
        "service replicated start",
    ],
    _if=[on_services, restart_needed],
)

files.block(
    name="Proxy settings in /etc/environment (builders)",
    path=ENVIRONMENT,
    content=host.data.environment_lines,
    marker=BLOCK_MARKER,
    _if=on_builders,
)
dropin = files.put(
    name="Docker daemon's proxy drop-in",
    src=StringIO(host.data.docker_dropin),
    dest=DOCKER_DROPIN,
    mode="644",
    _if=on_docker_builders,
)
server.shell(
    name="Restart Docker, when its drop-in changed",
    commands=["service docker restart"],
    _if=[on_docker_builders, dropin.did_change],
)
server.shell(
    name="Builder installer, unless it ran before (the passphrase on stdin)",
    commands=[
        "read -r CIRCLE_SECRET_PASSPHRASE && export CIRCLE_SECRET_PASSPHRASE"
        f" && mkdir -p {MARKER_DIR}"
        f" && curl -fsSL --retry 2 -o {MARKER_DIR}/init-builder.sh {host.data.builder_script}"
        f" && bash {MARKER_DIR}/init-builder.sh < /dev/null"
        f" && touch {MARKER_DIR}/installed-builder"
    ],
    _env={**host.data.proxy_env, "SERVICES_PRIVATE_IP": host.data.services_private_ip},
    _stdin=os.environ["CIRCLE_SECRET_PASSPHRASE"],
    _if=[on_builders, lambda: not_installed("builder")],
)
