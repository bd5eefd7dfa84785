"""Bring a lab up, read it back, describe it and take it down, all through the docker CLI.

Layout of a lab named NAME (every object labelled ``ccie-remote.lab=NAME``):

    NAME-fleet    bridge   NAME-services, NAME-builder-N (SSH published on 127.0.0.1),
                           NAME-proxy (alias proxy.lab.test), and outside corporate mode
                           NAME-web (alias s3.lab.test: the S3 stand-in a bypass reaches)
    NAME-outside  internal NAME-proxy, NAME-web (alias vendor.lab.test)

The web container is the outside world. In corporate mode it is not on the fleet network, so
builders reach it only through the proxy. The fleet network is a plain bridge because Docker
publishes no port of a container that is only on an internal network; the proxy forwards to
lab names and fleet addresses only, so nothing real is reached through it.

``up`` on a lab name that is already running removes that lab first and builds a fresh one:
new containers, new host keys, new key pair, new ports.
"""

from __future__ import annotations

import logging
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from ccie_remote.errors import LabError
from ccie_remote.lab import access
from ccie_remote.lab.docker import docker, inspect, last_line, require_engine
from ccie_remote.lab.images import ensure_host_image
from ccie_remote.lab.model import Lab, LabHost
from ccie_remote.lab.poll import wait_for

log = logging.getLogger(__name__)

DEFAULT_NAME = "ccie-lab"
LABEL = "ccie-remote.lab"
ROLE_LABEL = "ccie-remote.role"
INDEX_LABEL = "ccie-remote.index"
DOCKER_LABEL = "ccie-remote.docker"
CORPORATE_LABEL = "ccie-remote.corporate"
INVENTORY_LABEL = "ccie-remote.inventory"
WORKDIR_LABEL = "ccie-remote.workdir"
ROLES = ("services", "builder", "proxy", "web")
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]{0,47}")
READY_TIMEOUT = 60


@dataclass
class HostPlan:
    """One container to create: where it sits on the networks and what it starts as."""

    role: str
    container: str
    hostname: str
    networks: list[tuple[str, list[str]]]
    index: int = 0
    docker: bool = False
    publish_ssh: bool = False
    env: dict[str, str] = field(default_factory=dict)


def up(
    name: str = DEFAULT_NAME,
    builders: int = 2,
    corporate: bool = False,
    docker_builders: int = 0,
    workdir: Path = Path(".lab"),
    inventory: Path = Path("lab.toml"),
) -> Lab:
    """Bring up a lab (replacing a running one of the same name) and write its inventory."""
    check_request(name, builders, docker_builders)
    require_engine()
    image = ensure_host_image()
    if down(name):
        log.info("removed the running lab %s to bring it up afresh", name)

    lab_dir = (workdir / name).resolve()
    _, public_key = access.make_key_pair(lab_dir, f"ccie-remote lab {name}")
    labels = {
        LABEL: name,
        CORPORATE_LABEL: str(corporate).lower(),
        INVENTORY_LABEL: str(inventory.resolve()),
        WORKDIR_LABEL: str(lab_dir),
    }
    try:
        start_lab(name, image, labels, builders, corporate, docker_builders, public_key)
        lab = load(name, workdir)
        wait_until_ready(lab)
        access.write_known_hosts(lab.known_hosts, host_key_lines(lab))
        access.write_inventory(lab)
    except BaseException:
        remove_after_failure(name)
        raise
    log.debug("lab %s is up: inventory %s", name, lab.inventory_path)
    return lab


def down(name: str = DEFAULT_NAME) -> list[str]:
    """Remove the containers and networks labelled as lab NAME; return their names.

    Images stay (they are a cache), and so do the lab's key, known_hosts and lab.toml.
    """
    check_name(name)
    containers = lab_containers(f"label={LABEL}={name}")
    if containers:
        docker("rm", "--force", "--volumes", *containers)
    networks = lab_networks(f"label={LABEL}={name}")
    for network in networks:
        # The engine may release a removed container's endpoint a moment later.
        wait_for(partial(_network_removed, network), f"removing {network}", 15)
    return sorted(containers) + sorted(networks)


def _network_removed(network: str) -> bool:
    try:
        docker("network", "rm", network)
    except LabError:
        return not lab_networks(f"name=^{network}$")
    return True


def remove_after_failure(name: str) -> None:
    """Take a half-made lab down without hiding the error that stopped it."""
    try:
        down(name)
    except LabError as error:
        log.warning("could not remove the half-made lab %s: %s", name, error)


def status(name: str | None = None) -> list[dict[str, str]]:
    """One row per lab container and network (of lab NAME, or of every lab)."""
    selector = f"label={LABEL}={name}" if name else f"label={LABEL}"
    rows = [container_row(details) for details in inspect("container", lab_containers(selector))]
    rows += [network_row(details) for details in inspect("network", lab_networks(selector))]
    return sorted(rows, key=lambda row: (row["lab"], row["kind"], row["name"]))


def load(name: str = DEFAULT_NAME, workdir: Path = Path(".lab")) -> Lab:
    """Read a running lab back from its containers' labels, ports and addresses.

    The labels name the lab's folder and inventory; WORKDIR only stands in for a lab whose
    containers lack that label.
    """
    check_name(name)
    containers = lab_containers(f"label={LABEL}={name}")
    if not containers:
        raise LabError(f"no lab named {name!r} is running: bring one up with `fab lab.up`")
    details = inspect("container", containers)
    stopped = [d["Name"].lstrip("/") for d in details if not d["State"]["Running"]]
    if stopped:
        raise LabError(f"lab {name}: not running: {', '.join(sorted(stopped))} (`fab lab.up`)")

    labels: dict[str, str] = details[0]["Config"]["Labels"]
    lab_dir = Path(labels.get(WORKDIR_LABEL) or (workdir / name).resolve())
    details.sort(key=host_order)
    return Lab(
        name=name,
        inventory_path=Path(labels[INVENTORY_LABEL]),
        key_file=lab_dir / access.KEY_NAME,
        known_hosts=lab_dir / "known_hosts",
        corporate=labels.get(CORPORATE_LABEL) == "true",
        hosts=[lab_host(d, f"{name}-fleet") for d in details],
    )


def check_request(name: str, builders: int, docker_builders: int) -> None:
    """Refuse a lab that cannot be built, before anything is made."""
    check_name(name)
    if builders < 0:
        raise LabError(f"--builders must be 0 or more, not {builders}")
    if not 0 <= docker_builders <= builders:
        raise LabError(f"--docker-builders must be between 0 and --builders ({builders})")


def check_name(name: str) -> None:
    """A lab name becomes part of container and network names."""
    if not NAME_PATTERN.fullmatch(name):
        raise LabError(
            f"lab name {name!r} must be lowercase letters, digits, '.', '_' or '-' (48 at most)"
        )


def start_lab(
    name: str,
    image: str,
    labels: dict[str, str],
    builders: int,
    corporate: bool,
    docker_builders: int,
    public_key: str,
) -> None:
    """Create the networks and containers; the proxy last, once it knows the fleet's addresses."""
    fleet, outside = f"{name}-fleet", f"{name}-outside"
    docker("network", "create", *label_args(labels), fleet)
    docker("network", "create", "--internal", *label_args(labels), outside)

    plans = [web_plan(name, fleet, outside, corporate), services_plan(name, fleet, public_key)]
    plans += [
        builder_plan(name, fleet, public_key, index, index < docker_builders)
        for index in range(builders)
    ]
    for plan in plans:
        create(plan, image, labels)
    docker("start", *[plan.container for plan in plans])

    ssh_hosts = [plan.container for plan in plans if plan.publish_ssh]
    fleet_ips = [fleet_ip(details, fleet) for details in inspect("container", ssh_hosts)]
    proxy = proxy_plan(name, fleet, outside, fleet_subnet(fleet), fleet_ips)
    create(proxy, image, labels)
    docker("start", proxy.container)


def web_plan(name: str, fleet: str, outside: str, corporate: bool) -> HostPlan:
    networks = [(outside, ["vendor.lab.test"])]
    if not corporate:
        networks.append((fleet, ["s3.lab.test"]))
    return HostPlan("web", f"{name}-web", "web", networks, env={"LAB_ROLE": "web"})


def services_plan(name: str, fleet: str, public_key: str) -> HostPlan:
    env = {"LAB_ROLE": "services", "LAB_AUTHORIZED_KEY": public_key}
    return HostPlan(
        "services", f"{name}-services", "services", [(fleet, [])], publish_ssh=True, env=env
    )


def builder_plan(name: str, fleet: str, public_key: str, index: int, docker: bool) -> HostPlan:
    env = {"LAB_ROLE": "builder", "LAB_AUTHORIZED_KEY": public_key, "LAB_DOCKER": str(int(docker))}
    return HostPlan(
        "builder",
        f"{name}-builder-{index}",
        f"builder-{index}",
        [(fleet, [])],
        index=index,
        docker=docker,
        publish_ssh=True,
        env=env,
    )


def proxy_plan(name: str, fleet: str, outside: str, subnet: str, fleet_ips: list[str]) -> HostPlan:
    env = {"LAB_ROLE": "proxy", "LAB_ALLOW": subnet, "LAB_FLEET_IPS": " ".join(fleet_ips)}
    networks = [(fleet, ["proxy.lab.test"]), (outside, [])]
    return HostPlan("proxy", f"{name}-proxy", "proxy", networks, env=env)


def create(plan: HostPlan, image: str, labels: dict[str, str]) -> None:
    """`docker create` on the first network, then `docker network connect` to the others."""
    host_labels = {
        **labels,
        ROLE_LABEL: plan.role,
        INDEX_LABEL: str(plan.index),
        DOCKER_LABEL: str(plan.docker).lower(),
    }
    (first, first_aliases), *others = plan.networks
    args = ["create", "--init", "--name", plan.container, "--hostname", plan.hostname]
    args += ["--network", first, *alias_args("--network-alias", first_aliases)]
    args += label_args(host_labels)
    if plan.publish_ssh:
        args += ["--publish", "127.0.0.1::22"]
    for key, value in plan.env.items():
        args += ["--env", f"{key}={value}"]
    docker(*args, image)

    for network, aliases in others:
        docker("network", "connect", *alias_args("--alias", aliases), network, plan.container)


def wait_until_ready(lab: Lab) -> None:
    """Poll each daemon until it answers: sshd's banner, the proxy's and the web's ports."""
    probes: list[tuple[str, str, Callable[[], bool]]] = [
        (host.container, "sshd", partial(sshd_answers, host.ssh_port))
        for host in lab.hosts
        if host.ssh_port is not None
    ]
    for host, port in ((lab.proxy(), 3128), (lab.web(), 80)):
        probes.append(
            (host.container, f"port {port}", partial(listening, lab, host.container, port))
        )

    for container, what, probe in probes:
        wait_for(partial(answers, container, probe), f"{what} in {container}", READY_TIMEOUT)


def answers(container: str, probe: Callable[[], bool]) -> bool:
    """Whether PROBE passes; a LabError at once, with the container's last words, if it died."""
    if probe():
        return True
    state = inspect("container", [container])[0]["State"]
    if not state["Running"]:
        logs = docker("logs", "--tail", "5", container, check=False)
        reason = last_line(logs.stderr or logs.stdout)
        raise LabError(f"{container} stopped at start (exit {state['ExitCode']}): {reason}")
    return False


def sshd_answers(port: int) -> bool:
    """Whether sshd behind 127.0.0.1:PORT sends its banner (docker's proxy accepts earlier)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as connection:
            return connection.recv(4).startswith(b"SSH-")
    except OSError:
        return False


def listening(lab: Lab, container: str, port: int) -> bool:
    """Whether something in CONTAINER listens on TCP PORT."""
    found = lab.exec(container, f"ss -Hltn 'sport = :{port}'", check=False)
    return found.returncode == 0 and bool(found.stdout.strip())


def host_key_lines(lab: Lab) -> list[str]:
    """known_hosts lines from each SSH host's own ed25519 key."""
    lines = []
    for host in lab.hosts:
        if host.ssh_port is not None:
            key = lab.exec(host.container, "cat /etc/ssh/ssh_host_ed25519_key.pub").stdout
            lines.append(access.known_hosts_line(host.ssh_port, key))
    return lines


def lab_host(details: dict[str, Any], fleet: str) -> LabHost:
    """A LabHost from `docker container inspect` output."""
    labels = details["Config"]["Labels"]
    return LabHost(
        role=labels[ROLE_LABEL],
        container=details["Name"].lstrip("/"),
        ssh_port=ssh_port(details),
        fleet_ip=fleet_ip(details, fleet) or None,
        docker=labels.get(DOCKER_LABEL) == "true",
    )


def host_order(details: dict[str, Any]) -> tuple[int, int]:
    """Services box, builders by index, proxy, web."""
    labels = details["Config"]["Labels"]
    role = labels.get(ROLE_LABEL, "")
    rank = ROLES.index(role) if role in ROLES else len(ROLES)
    return rank, int(labels.get(INDEX_LABEL, "0"))


def ssh_port(details: dict[str, Any]) -> int | None:
    """The host port published for the container's port 22, if any."""
    bindings = (details["NetworkSettings"].get("Ports") or {}).get("22/tcp") or []
    return int(bindings[0]["HostPort"]) if bindings else None


def fleet_ip(details: dict[str, Any], fleet: str) -> str:
    """The container's address on the fleet network ('' when it is not on it)."""
    network = (details["NetworkSettings"].get("Networks") or {}).get(fleet) or {}
    address: str = network.get("IPAddress") or ""
    return address


def fleet_subnet(fleet: str) -> str:
    """The fleet network's subnet, which the proxy allows."""
    configs = inspect("network", [fleet])[0]["IPAM"]["Config"] or []
    subnets = [config["Subnet"] for config in configs if ":" not in config.get("Subnet", ":")]
    if not subnets:
        raise LabError(f"network {fleet} has no IPv4 subnet")
    return str(subnets[0])


def container_row(details: dict[str, Any]) -> dict[str, str]:
    labels = details["Config"]["Labels"]
    port = ssh_port(details)
    return {
        "lab": labels.get(LABEL, ""),
        "kind": "container",
        "name": details["Name"].lstrip("/"),
        "role": labels.get(ROLE_LABEL, ""),
        "state": details["State"]["Status"],
        "ssh": f"127.0.0.1:{port}" if port else "",
        "address": fleet_ip(details, f"{labels.get(LABEL, '')}-fleet"),
    }


def network_row(details: dict[str, Any]) -> dict[str, str]:
    configs = details["IPAM"]["Config"] or []
    return {
        "lab": details["Labels"].get(LABEL, ""),
        "kind": "network",
        "name": details["Name"],
        "role": "outside" if details["Internal"] else "fleet",
        "state": "internal" if details["Internal"] else "bridge",
        "ssh": "",
        "address": ", ".join(config.get("Subnet", "") for config in configs),
    }


def lab_containers(selector: str) -> list[str]:
    """Names of the containers, running or not, that match a label SELECTOR."""
    return listed("ps", "--all", "--filter", selector, "--format", "{{.Names}}")


def lab_networks(selector: str) -> list[str]:
    """Names of the networks that match a label SELECTOR."""
    return listed("network", "ls", "--filter", selector, "--format", "{{.Name}}")


def listed(*args: str) -> list[str]:
    """The non-blank lines a docker listing command prints."""
    return [line.strip() for line in docker(*args).stdout.splitlines() if line.strip()]


def label_args(labels: dict[str, str]) -> list[str]:
    return [arg for key, value in labels.items() for arg in ("--label", f"{key}={value}")]


def alias_args(flag: str, aliases: list[str]) -> list[str]:
    return [arg for alias in aliases for arg in (flag, alias)]
