"""Pure rendering: the fleet and a file's current text in, the file's new text out.

Nothing here opens a connection or reads a file; the remote steps read the current text, call
these functions and write what they return. Every render is idempotent:
``render(fleet, render(fleet, text)) == render(fleet, text)``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass

from ccie_remote import bypass
from ccie_remote.errors import ManagedFileError
from ccie_remote.inventory import Fleet, Host

ENVIRONMENT = "/etc/environment"
REPLICATED_CONF = "/etc/replicated.conf"
REPLICATED_DEFAULT = "/etc/default/replicated"
DOCKER_DROPIN = "/etc/systemd/system/docker.service.d/http-proxy.conf"

BEGIN = "# BEGIN ccie-remote proxy settings (managed: edit the inventory, not this block)"
END = "# END ccie-remote proxy settings"
SUPERSEDED = "# ccie-remote: superseded by the managed block: "
HEADER = "# Managed by ccie-remote: edit the inventory and run `fab provision`, not this file.\n"

# The order they are written in; the lowercase twins exist because curl ignores HTTP_PROXY.
ENV_NAMES = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")
MANAGED_NAMES = (*ENV_NAMES, "JVM_OPTS")
_DEFINITION = re.compile(r"^\s*(?:export\s+)?(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*=")
_PROXY_OPTION = re.compile(r"^(?:HTTP_PROXY|HTTPS_PROXY|NO_PROXY)=", re.IGNORECASE)


# --- values -------------------------------------------------------------------------------------


def environment_values(fleet: Fleet) -> dict[str, str]:
    """The variables of the managed block, in the order they are written."""
    http, https = fleet.proxy.http.url, fleet.proxy.https.url
    no_proxy = bypass.no_proxy(fleet)
    values = dict(zip(ENV_NAMES, (http, https, no_proxy, http, https, no_proxy), strict=True))
    values["JVM_OPTS"] = jvm_opts(fleet)
    return values


def jvm_opts(fleet: Fleet) -> str:
    """Java's proxy flags: a bare host and port each (Java takes no scheme, no credentials)."""
    http, https = fleet.proxy.http, fleet.proxy.https
    return " ".join(
        (
            f"-Dhttp.proxyHost={http.host}",
            f"-Dhttp.proxyPort={http.port}",
            f"-Dhttps.proxyHost={https.host}",
            f"-Dhttps.proxyPort={https.port}",
            f"-Dhttp.nonProxyHosts={bypass.java_non_proxy_hosts(fleet)}",
        )
    )


def warnings(fleet: Fleet) -> list[str]:
    """What the rendered settings cannot do for some consumer, one line each."""
    lines = bypass.warnings(fleet)
    if fleet.proxy.http.has_credentials or fleet.proxy.https.has_credentials:
        lines.append(
            f"{fleet.path}: [proxy]: the proxy takes credentials, which JVM_OPTS cannot carry; "
            "Java will not authenticate to the proxy through these flags"
        )
    return lines


# --- /etc/environment ---------------------------------------------------------------------------


def environment_block(fleet: Fleet) -> str:
    """The managed block, marker lines included, in pam_env syntax (no $VAR expansion)."""
    lines = [BEGIN]
    lines += [f'{name}="{value}"' for name, value in environment_values(fleet).items()]
    lines.append(END)
    return "\n".join(lines) + "\n"


def environment(fleet: Fleet, current: str | None) -> str:
    """/etc/environment with the managed block in place and every outside line kept."""
    return _with_block(current or "", environment_block(fleet))


def environment_removed(current: str) -> str:
    """/etc/environment without the managed block (superseded lines stay commented)."""
    return _with_block(current, "")


def _with_block(current: str, block: str) -> str:
    """``current`` with its managed block replaced by ``block`` (appended when it has none)."""
    before: list[str] = []
    after: list[str] = []
    found = inside = False
    for line in current.splitlines(keepends=True):
        bare = line.rstrip("\r\n")
        if bare == BEGIN:
            if inside:
                raise ManagedFileError(f"{ENVIRONMENT}: a second '{BEGIN}' before its END line")
            inside = found = True
            continue
        if bare == END and inside:
            inside = False
            continue
        if inside:
            continue
        (after if found else before).append(_supersede(line))
    if inside:
        raise ManagedFileError(
            f"{ENVIRONMENT}: the managed block has no END line; fix the file by hand"
        )

    head = "".join(before)
    if head and not head.endswith("\n"):
        head += "\n"
    return head + block + "".join(after)


def _supersede(line: str) -> str:
    """Comment out an outside definition of a managed variable, keeping its text."""
    match = _DEFINITION.match(line)
    if match and match["name"] in MANAGED_NAMES:
        return SUPERSEDED + line.lstrip()
    return line


def parse_environment(text: str) -> dict[str, str]:
    """Read /etc/environment the way pam_env does: KEY=VALUE, matching quotes stripped."""
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        name, sep, value = line.partition("=")
        if not sep or not name:
            continue
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[name] = value
    return values


# --- /etc/replicated.conf -----------------------------------------------------------------------


def replicated_conf(fleet: Fleet, current: str | None) -> str:
    """The installer's settings with ``HttpProxy`` set; every other key kept."""
    settings = _json_object(current)
    settings["HttpProxy"] = fleet.proxy.http.url
    return json.dumps(settings, indent=2) + "\n"


def replicated_conf_removed(current: str) -> str:
    settings = _json_object(current)
    settings.pop("HttpProxy", None)
    return json.dumps(settings, indent=2) + "\n"


def _json_object(current: str | None) -> dict[str, object]:
    if current is None or not current.strip():
        return {}
    try:
        settings = json.loads(current)
    except json.JSONDecodeError as error:
        raise ManagedFileError(
            f"{REPLICATED_CONF} is not valid JSON (line {error.lineno}: {error.msg}); "
            "left untouched, fix or remove it by hand"
        ) from None
    if not isinstance(settings, dict):
        raise ManagedFileError(f"{REPLICATED_CONF} holds JSON but not an object; left untouched")
    return settings


# --- /etc/default/replicated --------------------------------------------------------------------


def replicated_default(fleet: Fleet, current: str | None) -> str:
    """The daemon's settings with its ``-e`` proxy variables in step with the inventory."""
    ours = [
        f"-e HTTP_PROXY={fleet.proxy.http.url}",
        f"-e HTTPS_PROXY={fleet.proxy.https.url}",
        f"-e NO_PROXY={bypass.no_proxy(fleet)}",
    ]
    return _with_replicated_opts(current or "", ours)


def replicated_default_removed(current: str) -> str:
    return _with_replicated_opts(current, [])


def _with_replicated_opts(current: str, ours: list[str]) -> str:
    lines = current.splitlines(keepends=True)
    for index, line in enumerate(lines):
        match = re.match(r'^(\s*(?:export\s+)?REPLICATED_OPTS=)(["\']?)(.*?)\2(\s*)$', line)
        if match:
            kept = _without_proxy_options(match[3].split())
            value = " ".join([*kept, *ours])
            lines[index] = f'{match[1]}"{value}"{match[4] or chr(10)}'
            return "".join(lines)
    if not ours:
        return current
    text = "".join(lines)
    if text and not text.endswith("\n"):
        text += "\n"
    return text + f'REPLICATED_OPTS="{" ".join(ours)}"\n'


def _without_proxy_options(tokens: list[str]) -> list[str]:
    kept: list[str] = []
    skip = False
    for index, token in enumerate(tokens):
        if skip:
            skip = False
            continue
        following = tokens[index + 1] if index + 1 < len(tokens) else ""
        if token == "-e" and _PROXY_OPTION.match(following):
            skip = True
            continue
        kept.append(token)
    return kept


# --- the Docker daemon's drop-in ----------------------------------------------------------------


def docker_dropin(fleet: Fleet, current: str | None = None) -> str:
    """The systemd drop-in for docker.service; each assignment quoted, ``%`` doubled."""
    values = environment_values(fleet)
    assignments = " ".join(
        '"{}={}"'.format(name, values[name].replace("%", "%%"))
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")
    )
    return f"{HEADER}[Service]\nEnvironment={assignments}\n"


# --- which files a host gets --------------------------------------------------------------------


@dataclass(frozen=True)
class ManagedFile:
    """A file ccie-remote keeps on a host, and what depends on it."""

    path: str
    mode: int  # for a new file; an existing file keeps its owner and mode
    render: Callable[[Fleet, str | None], str]
    removed: Callable[[str], str | None]  # its text without our settings; None: delete it
    only_if_present: bool = False  # kept in step when it exists, never created


def _delete(current: str) -> None:
    return None


ENVIRONMENT_FILE = ManagedFile(ENVIRONMENT, 0o644, environment, environment_removed)
REPLICATED_CONF_FILE = ManagedFile(
    REPLICATED_CONF, 0o600, replicated_conf, replicated_conf_removed
)
REPLICATED_DEFAULT_FILE = ManagedFile(
    REPLICATED_DEFAULT,
    0o644,
    replicated_default,
    replicated_default_removed,
    only_if_present=True,
)
DOCKER_DROPIN_FILE = ManagedFile(DOCKER_DROPIN, 0o644, docker_dropin, _delete)
ALL_MANAGED = (ENVIRONMENT_FILE, REPLICATED_CONF_FILE, REPLICATED_DEFAULT_FILE, DOCKER_DROPIN_FILE)


def managed_files(host: Host) -> list[ManagedFile]:
    """The files ccie-remote manages on ``host``, in the order they are written."""
    if host.role == "services":
        return [ENVIRONMENT_FILE, REPLICATED_CONF_FILE, REPLICATED_DEFAULT_FILE]
    if host.docker:
        return [ENVIRONMENT_FILE, DOCKER_DROPIN_FILE]
    return [ENVIRONMENT_FILE]


def render_host(fleet: Fleet, host: Host, current: dict[str, str | None]) -> dict[str, str]:
    """New text for each of the host's managed files, given their current text (None: absent).

    A file that is ``only_if_present`` and absent is left out of the result.
    """
    rendered: dict[str, str] = {}
    for managed in managed_files(host):
        text = current.get(managed.path)
        if managed.only_if_present and text is None:
            continue
        rendered[managed.path] = managed.render(fleet, text)
    return rendered
