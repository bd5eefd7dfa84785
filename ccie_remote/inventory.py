"""The inventory: a TOML file read into a typed, validated fleet.

Validation collects every problem before it reports, one line each, naming the file and the
field. Every name, address and URL is checked against a strict character set here, so nothing
that reaches a remote command line later can carry a shell metacharacter.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from ccie_remote.errors import InventoryError

DEFAULT_SERVICES_SCRIPT = "https://s3.amazonaws.com/circleci-enterprise/init-services.sh"
DEFAULT_BUILDER_SCRIPT = "https://s3.amazonaws.com/circleci-enterprise/init-builder-0.2.sh"
HOST_KEY_POLICIES = ("strict", "accept-new")

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*\.?$")
# Characters allowed in proxy credentials: unreserved ones and percent-escapes. Anything else
# must be percent-encoded, which keeps `$`, quotes and `;` out of every file and command line.
_USERINFO = re.compile(r"^[A-Za-z0-9._~%-]+$")
_URL_PATH = re.compile(r"^[A-Za-z0-9._~/%+=:@,-]*$")
_URL = re.compile(
    r"^(?P<scheme>[a-z][a-z0-9+.-]*)://"
    r"(?:(?P<user>[^:@/]*)(?::(?P<password>[^@/]*))?@)?"
    r"(?P<host>\[[0-9A-Fa-f:.]+\]|[^:/?#\[\]@]+)"
    r"(?::(?P<port>[^/?#]*))?"
    r"(?P<path>[/?#].*)?$"
)


@dataclass(frozen=True)
class ProxyUrl:
    """A proxy address, parsed; ``str()`` never shows the credentials."""

    scheme: str
    host: str
    port: int
    username: str = ""
    password: str = ""

    @property
    def url(self) -> str:
        """The full URL, credentials included: only ever written into root-owned files."""
        auth = f"{self.username}:{self.password}@" if self.password else ""
        if self.username and not self.password:
            auth = f"{self.username}@"
        return f"{self.scheme}://{auth}{self.host_port}"

    @property
    def masked(self) -> str:
        auth = "***@" if self.username or self.password else ""
        return f"{self.scheme}://{auth}{self.host_port}"

    @property
    def host_port(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def has_credentials(self) -> bool:
        return bool(self.username or self.password)

    def __str__(self) -> str:
        return self.masked


@dataclass(frozen=True)
class Proxy:
    http: ProxyUrl
    https: ProxyUrl
    no_proxy: tuple[str, ...] = ()
    bypass_s3: bool = True
    corporate: bool = False
    ec2: bool = True


@dataclass(frozen=True)
class Ssh:
    user: str = "ubuntu"
    key_file: Path | None = None
    port: int = 22
    known_hosts: Path = Path("~/.ssh/known_hosts").expanduser()
    host_key_policy: str = "accept-new"
    gateway: str | None = None


@dataclass(frozen=True)
class Host:
    """A fleet machine: where SSH connects (address and port) and its private address."""

    role: str  # "services" or "builder"
    host: str
    port: int
    private_ip: str
    docker: bool = False

    @property
    def name(self) -> str:
        """How the host is named in every message: its address, and its port unless 22."""
        if self.port == 22:
            return self.host
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def matches(self, selector: str) -> bool:
        """True when ``selector`` (HOST or HOST:PORT, as --only takes it) names this host."""
        if selector == self.name or selector == f"{self.host}:{self.port}":
            return True
        return selector == self.host


@dataclass(frozen=True)
class Install:
    services_script: str = DEFAULT_SERVICES_SCRIPT
    builder_script: str = DEFAULT_BUILDER_SCRIPT


@dataclass(frozen=True)
class Fleet:
    """Everything one inventory file says."""

    path: Path
    proxy: Proxy
    github_host: str
    ssh: Ssh
    services: Host
    builders: tuple[Host, ...] = ()
    install: Install = field(default_factory=Install)

    @property
    def hosts(self) -> tuple[Host, ...]:
        return (self.services, *self.builders)

    def secrets(self) -> list[str]:
        """Strings that must never reach the screen or a log: proxy credentials."""
        found: list[str] = []
        for proxy_url in (self.proxy.http, self.proxy.https):
            for value in (proxy_url.password, proxy_url.username):
                if value:
                    found += [value, unquote(value)]
        return sorted(set(found), key=len, reverse=True)


# --- the schema -------------------------------------------------------------------------------

SCHEMA: dict[str, set[str]] = {
    "proxy": {"http", "https", "no_proxy", "bypass_s3", "corporate", "ec2"},
    "github": {"host"},
    "ssh": {"user", "key_file", "port", "known_hosts", "host_key_policy", "gateway"},
    "services": {"host", "port", "private_ip"},
    "builders": {"host", "port", "private_ip", "docker"},
    "install": {"services_script", "builder_script"},
}
REQUIRED_TABLES = ("proxy", "github", "services")


def load(path: Path) -> Fleet:
    """Read and validate the inventory at ``path``; raises InventoryError listing every problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InventoryError(
            [f"{path}: no such inventory (give --inventory PATH or set $CCIE_INVENTORY)"]
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise InventoryError([f"{path}: cannot read the inventory: {error}"]) from None
    return parse(text, path)


def parse(text: str, path: Path) -> Fleet:
    """Validate inventory ``text``; ``path`` names it in messages and anchors relative paths."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise InventoryError([_syntax_error(path, error)]) from None
    checker = _Checker(path)
    fleet = checker.fleet(data)
    if checker.problems or fleet is None:
        raise InventoryError(checker.problems)
    return fleet


def _syntax_error(path: Path, error: tomllib.TOMLDecodeError) -> str:
    message = str(error)
    where = re.search(r"\(at line (\d+), column (\d+)\)", message)
    if where:
        reason = message[: where.start()].strip()
        return f"{path}:{where.group(1)}:{where.group(2)}: TOML syntax error: {reason}"
    return f"{path}: TOML syntax error: {message}"


# --- value checks, shared with tasks that take a host on the command line ----------------------


def host_problem(value: object) -> str | None:
    """Why ``value`` is not a host name or IP address, or None when it is one."""
    if not isinstance(value, str) or not value:
        return "expected a host name or IP address"
    if is_ip(value) or (_HOSTNAME.match(value) and not value.replace(".", "").isdigit()):
        return None
    return f"{value!r} is not a valid host name or IP address"


def port_problem(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return f"expected a port number, got {value!r}"
    if not 1 <= value <= 65535:
        return f"port {value} is out of range 1-65535"
    return None


def is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def parse_proxy_url(value: object) -> ProxyUrl | str:
    """A ProxyUrl, or the reason ``value`` is not one; bare ``host:port`` means http."""
    if not isinstance(value, str) or not value:
        return "expected a proxy URL such as http://10.0.0.33:3128"
    text = value if "://" in value else f"http://{value}"
    match = _URL.match(text)
    if not match:
        return f"{_mask_text(value)!r} is not a URL"
    scheme, host, port_text = match["scheme"], match["host"], match["port"]
    if scheme not in ("http", "https"):
        return f"proxy scheme {scheme!r} is not supported (use http:// or https://)"
    if match["path"] not in (None, "", "/"):
        return f"{_mask_text(value)!r}: a proxy URL has no path"
    host = host[1:-1] if host.startswith("[") else host
    reason = host_problem(host)
    if reason:
        return reason
    if not port_text:
        return f"{_mask_text(value)!r} has no port (write it as {scheme}://{host}:PORT)"
    if not port_text.isdigit():
        return f"port {port_text!r} is not a number"
    port = int(port_text)
    reason = port_problem(port)
    if reason:
        return reason
    user, password = match["user"] or "", match["password"] or ""
    for part in (user, password):
        if part and not _USERINFO.match(part):
            return (
                "proxy credentials may only hold letters, digits and . _ ~ - "
                "(percent-encode the rest)"
            )
    return ProxyUrl(scheme, host, port, user, password)


def url_problem(value: object) -> str | None:
    """Why ``value`` is not a safe http(s) URL to download an installer from."""
    if not isinstance(value, str) or not value:
        return "expected an http:// or https:// URL"
    match = _URL.match(value)
    if not match or match["scheme"] not in ("http", "https"):
        return f"{value!r} is not an http:// or https:// URL"
    if match["user"] is not None:
        return f"{value!r}: credentials in an installer URL are not supported"
    host = match["host"][1:-1] if match["host"].startswith("[") else match["host"]
    reason = host_problem(host)
    if reason:
        return reason
    if match["port"] and port_problem(int(match["port"]) if match["port"].isdigit() else -1):
        return f"{value!r} has an invalid port"
    if match["path"] and not _URL_PATH.match(match["path"]):
        return f"{value!r} holds characters not allowed in an installer URL"
    return None


def bypass_entry_problem(value: object) -> str | None:
    """Why ``value`` cannot be a bypass-list entry (name, .domain, *.domain, IP or CIDR)."""
    if not isinstance(value, str) or not value:
        return "expected a host name, .domain, IP address or CIDR range"
    if is_ip(value):
        return None
    if "/" in value:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            return f"{value!r} is not a valid CIDR range"
        return None
    name = value[2:] if value.startswith("*.") else value.lstrip(".")
    if _HOSTNAME.match(name):
        return None
    return f"{value!r} is not a host name, .domain, IP address or CIDR range"


def gateway_problem(value: object) -> str | None:
    if not isinstance(value, str):
        return "expected [user@]host[:port]"
    user, _, rest = value.rpartition("@")
    if user and not re.match(r"^[a-z_][a-z0-9_.-]*$", user):
        return f"{user!r} is not a valid user name"
    host, _, port = rest.partition(":")
    if port and (not port.isdigit() or port_problem(int(port))):
        return f"{port!r} is not a valid port"
    return host_problem(host)


def _mask_text(value: str) -> str:
    return re.sub(r"//[^@/]*@", "//***@", value)


class _Checker:
    """Walks the parsed TOML, collecting one line per problem."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.problems: list[str] = []
        self.present: set[str] = set()

    def problem(self, where: str, message: str) -> None:
        self.problems.append(f"{self.path}: {where}: {message}")

    def fleet(self, data: dict[str, Any]) -> Fleet | None:
        self.present = set(data)
        self.unknown_keys(data, "", set(SCHEMA))
        for name in REQUIRED_TABLES:
            if name not in data:
                self.problem(f"[{name}]", "missing table")
        for name in SCHEMA:
            value = data.get(name)
            expected_list = name == "builders"
            if value is None:
                continue
            if expected_list and not (
                isinstance(value, list) and all(isinstance(v, dict) for v in value)
            ):
                self.problem("[[builders]]", "expected an array of tables ([[builders]])")
                data[name] = []
            elif not expected_list and not isinstance(value, dict):
                self.problem(f"[{name}]", "expected a table")
                data[name] = {}

        proxy = self.proxy(data.get("proxy") or {})
        github = self.github(data.get("github") or {})
        ssh = self.ssh(data.get("ssh") or {})
        services = self.host_entry(data.get("services") or {}, "[services]", "services", ssh)
        builders = tuple(
            self.host_entry(entry, f"[[builders]] #{i + 1}", "builder", ssh)
            for i, entry in enumerate(data.get("builders") or [])
        )
        install = self.install(data.get("install") or {})
        self.duplicates([h for h in (services, *builders) if h is not None])

        if proxy is None or github is None or services is None or None in builders:
            return None
        return Fleet(
            path=self.path,
            proxy=proxy,
            github_host=github,
            ssh=ssh,
            services=services,
            builders=tuple(b for b in builders if b is not None),
            install=install,
        )

    def unknown_keys(self, table: dict[str, Any], where: str, known: set[str]) -> None:
        for key in table:
            if key in known:
                continue
            label = f"{where}.{key}" if where else key
            close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            self.problem(label, f"unknown key{hint}")

    def proxy(self, table: dict[str, Any]) -> Proxy | None:
        self.unknown_keys(table, "[proxy]", SCHEMA["proxy"])
        if "proxy" in self.present and "http" not in table:
            self.problem("[proxy].http", "missing (the proxy URL, e.g. http://10.0.0.33:3128)")
        http = self.proxy_url(table, "http")
        https = self.proxy_url(table, "https") if "https" in table else http
        extras = table.get("no_proxy", [])
        if not isinstance(extras, list):
            self.problem("[proxy].no_proxy", "expected a list of strings")
            extras = []
        for entry in extras:
            reason = bypass_entry_problem(entry)
            if reason:
                self.problem("[proxy].no_proxy", reason)
        flags = {
            name: self.boolean(table, name, default)
            for name, default in (("bypass_s3", True), ("corporate", False), ("ec2", True))
        }
        if http is None or https is None:
            return None
        return Proxy(
            http=http,
            https=https,
            no_proxy=tuple(str(e) for e in extras),
            bypass_s3=flags["bypass_s3"],
            corporate=flags["corporate"],
            ec2=flags["ec2"],
        )

    def proxy_url(self, table: dict[str, Any], key: str) -> ProxyUrl | None:
        if key not in table:
            return None
        parsed = parse_proxy_url(table[key])
        if isinstance(parsed, str):
            self.problem(f"[proxy].{key}", parsed)
            return None
        return parsed

    def boolean(
        self, table: dict[str, Any], key: str, default: bool, where: str = "[proxy]"
    ) -> bool:
        value = table.get(key, default)
        if not isinstance(value, bool):
            self.problem(f"{where}.{key}", f"expected true or false, got {value!r}")
            return default
        return value

    def github(self, table: dict[str, Any]) -> str | None:
        self.unknown_keys(table, "[github]", SCHEMA["github"])
        if "host" not in table:
            if "github" in self.present:
                self.problem("[github].host", "missing")
            return None
        reason = host_problem(table["host"])
        if reason:
            self.problem("[github].host", reason)
            return None
        return str(table["host"])

    def ssh(self, table: dict[str, Any]) -> Ssh:
        self.unknown_keys(table, "[ssh]", SCHEMA["ssh"])
        defaults = Ssh()
        user = table.get("user", defaults.user)
        if not isinstance(user, str) or not re.match(r"^[a-z_][a-z0-9_.-]*$", user):
            self.problem("[ssh].user", f"{user!r} is not a valid user name")
            user = defaults.user
        port = self.port(table, "[ssh].port", defaults.port)
        policy = table.get("host_key_policy", defaults.host_key_policy)
        if policy not in HOST_KEY_POLICIES:
            self.problem(
                "[ssh].host_key_policy", f'expected "strict" or "accept-new", got {policy!r}'
            )
            policy = defaults.host_key_policy
        gateway = table.get("gateway")
        if gateway is not None:
            reason = gateway_problem(gateway)
            if reason:
                self.problem("[ssh].gateway", reason)
                gateway = None
        return Ssh(
            user=user,
            key_file=self.file_path(table, "key_file"),
            port=port,
            known_hosts=self.file_path(table, "known_hosts") or defaults.known_hosts,
            host_key_policy=policy,
            gateway=gateway,
        )

    def file_path(self, table: dict[str, Any], key: str) -> Path | None:
        value = table.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            self.problem(f"[ssh].{key}", "expected a file path")
            return None
        path = Path(value).expanduser()
        return path if path.is_absolute() else (self.path.parent / path).resolve()

    def port(self, table: dict[str, Any], where: str, default: int) -> int:
        value = table.get("port", default)
        reason = port_problem(value)
        if reason:
            self.problem(where, reason)
            return default
        return int(value)

    def host_entry(self, table: dict[str, Any], where: str, role: str, ssh: Ssh) -> Host | None:
        self.unknown_keys(table, where, SCHEMA["services" if role == "services" else "builders"])
        if "host" not in table:
            if role == "builder" or "services" in self.present:
                self.problem(f"{where}.host", "missing")
            return None
        reason = host_problem(table["host"])
        if reason:
            self.problem(f"{where}.host", reason)
            return None
        host = str(table["host"])
        port = self.port(table, f"{where}.port", ssh.port)
        private_ip = table.get("private_ip", host)
        reason = host_problem(private_ip)
        if reason:
            self.problem(f"{where}.private_ip", reason)
            return None
        docker = False
        if role == "builder":
            docker = self.boolean(table, "docker", False, where)
        return Host(role=role, host=host, port=port, private_ip=str(private_ip), docker=docker)

    def install(self, table: dict[str, Any]) -> Install:
        self.unknown_keys(table, "[install]", SCHEMA["install"])
        defaults = Install()
        values = {}
        for key in ("services_script", "builder_script"):
            value = table.get(key, getattr(defaults, key))
            reason = url_problem(value)
            if reason:
                self.problem(f"[install].{key}", reason)
                value = getattr(defaults, key)
            values[key] = value
        return Install(**values)

    def duplicates(self, hosts: list[Host]) -> None:
        seen: dict[tuple[str, int], Host] = {}
        for host in hosts:
            key = (host.host.lower(), host.port)
            if key in seen:
                self.problem(
                    f"{host.role} {host.name}",
                    f"duplicate host (same address and port as the {seen[key].role} entry)",
                )
            else:
                seen[key] = host
