"""The docker command line, run through subprocess: every failure becomes a one-line LabError."""

from __future__ import annotations

import json
import logging
import subprocess
from typing import Any

from ccie_remote.errors import LabError

log = logging.getLogger(__name__)

NO_ENGINE = "Cannot connect to the Docker daemon"
START_ENGINE_HINT = (
    "start one, e.g. `sudo dockerd > /tmp/dockerd.log 2>&1 &` (or `sudo systemctl start docker`)"
    " and wait until `docker info` answers"
)


def docker(
    *args: str,
    check: bool = True,
    input: str | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run `docker ARGS...` and return its text output; raise LabError when check fails."""
    log.debug("docker %s", " ".join(args))
    try:
        result = subprocess.run(
            ["docker", *args],
            capture_output=True,
            text=True,
            input=input,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError:
        raise LabError(
            "the docker command is not installed: install docker.io (Debian) or Docker Engine"
        ) from None
    except subprocess.TimeoutExpired:
        raise LabError(f"`docker {args[0]}` did not finish within {timeout:.0f}s") from None

    if check and result.returncode != 0:
        if NO_ENGINE in result.stderr:
            raise no_engine(result.stderr)
        raise LabError(f"`{short_command(args)}` failed: {last_line(result.stderr)}")
    return result


def require_engine() -> str:
    """Return the engine's version, or raise LabError saying how to start one."""
    result = docker("version", "--format", "{{.Server.Version}}", check=False, timeout=20)
    if result.returncode != 0 or not result.stdout.strip():
        raise no_engine(result.stderr)
    return result.stdout.strip()


def no_engine(stderr: str) -> LabError:
    """The error for a docker command that found no engine, saying how to start one."""
    return LabError(f"no Docker engine answers ({last_line(stderr)}): {START_ENGINE_HINT}")


def engine_answers() -> bool:
    """Whether a Docker engine answers on this machine."""
    try:
        require_engine()
    except LabError:
        return False
    return True


def inspect(kind: str, names: list[str]) -> list[dict[str, Any]]:
    """`docker KIND inspect NAMES...` as parsed JSON; nothing when NAMES is empty."""
    if not names:
        return []
    found: list[dict[str, Any]] = json.loads(docker(kind, "inspect", *names).stdout)
    return found


def image_exists(tag: str) -> bool:
    """Whether the engine holds an image under TAG."""
    return docker("image", "inspect", tag, check=False).returncode == 0


def short_command(args: tuple[str, ...] | list[str]) -> str:
    """A docker command cut to what names it: the verb and its last argument."""
    if len(args) <= 3:
        return "docker " + " ".join(args)
    return f"docker {args[0]} {args[1]} ... {args[-1]}"


def last_line(text: str) -> str:
    """The last non-blank line of an output, which is where docker puts the reason."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"
