"""The one bypass list, and how each consumer spells it.

The set is built once from the fleet; ``no_proxy`` and ``java_non_proxy_hosts`` are two
spellings of it. The spellings differ on purpose:

- NO_PROXY: comma list; a subdomain wildcard is written ``.domain`` because curl never matches
  a ``*`` inside a list; CIDR ranges are kept (curl 7.86+, Go, requests read them).
- Java's ``-Dhttp.nonProxyHosts``: ``|`` list; a subdomain wildcard is ``*.domain``; setting it
  replaces Java's own default, so ``localhost|127.*|[::1]`` is written first; CIDR cannot be
  expressed, which is reported as a warning rather than dropped silently.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ccie_remote.inventory import Fleet

METADATA_ADDRESS = "169.254.169.254"
S3_ENTRIES = ("s3.amazonaws.com", ".s3.amazonaws.com")
JAVA_DEFAULTS = ("localhost", "127.*", "[::1]")


@dataclass(frozen=True)
class Entry:
    """One bypass entry in canonical form: ``kind`` is name, domain, ip or cidr."""

    kind: str
    value: str  # name: "a.b"; domain: "a.b" (meaning every subdomain); ip; cidr

    @classmethod
    def parse(cls, text: str) -> Entry:
        """Read an entry written in either spelling (``.x`` and ``*.x`` are the same domain)."""
        text = text.strip()
        if text.startswith("[") and text.endswith("]"):
            text = text[1:-1]
        try:
            return cls("ip", str(ipaddress.ip_address(text)))
        except ValueError:
            pass
        if "/" in text:
            return cls("cidr", str(ipaddress.ip_network(text, strict=False)))
        if text.startswith("*."):
            return cls("domain", text[2:].lower())
        if text.startswith("."):
            return cls("domain", text[1:].lower())
        return cls("name", text.lower())

    @property
    def no_proxy(self) -> str:
        return f".{self.value}" if self.kind == "domain" else self.value

    @property
    def java(self) -> str | None:
        """Java's spelling, or None when Java cannot express the entry."""
        if self.kind == "cidr":
            return None
        if self.kind == "domain":
            return f"*.{self.value}"
        if self.kind == "ip" and ":" in self.value:
            return f"[{self.value}]"
        return self.value


def entries(fleet: Fleet) -> list[Entry]:
    """The bypass set, deduplicated, in a stable order (see the README's inventory reference)."""
    proxy = fleet.proxy
    texts = ["localhost", "127.0.0.1", fleet.services.private_ip, fleet.github_host]
    if proxy.ec2:
        texts.append(METADATA_ADDRESS)
    if proxy.bypass_s3 and not proxy.corporate:
        texts.extend(S3_ENTRIES)
    if proxy.corporate:
        texts.extend(builder.private_ip for builder in fleet.builders)
    texts.extend(proxy.no_proxy)

    unique: list[Entry] = []
    for text in texts:
        entry = Entry.parse(text)
        if entry not in unique:
            unique.append(entry)
    return unique


def no_proxy(fleet: Fleet) -> str:
    """The bypass set as NO_PROXY spells it."""
    return ",".join(entry.no_proxy for entry in entries(fleet))


def java_non_proxy_hosts(fleet: Fleet) -> str:
    """The bypass set as ``-Dhttp.nonProxyHosts`` spells it, Java's defaults first."""
    spelled = list(JAVA_DEFAULTS)
    for entry in entries(fleet):
        java = entry.java
        if java is not None and java not in spelled:
            spelled.append(java)
    return "|".join(spelled)


def warnings(fleet: Fleet) -> list[str]:
    """What the bypass list cannot do for some consumer, one line each."""
    lines = []
    for entry in entries(fleet):
        if entry.java is None:
            lines.append(
                f"{fleet.path}: [proxy].no_proxy: Java cannot express the range {entry.value}; "
                "it bypasses the proxy for curl, Go and Python but not for JVM_OPTS "
                "(list the addresses Java needs one by one)"
            )
    return lines
