"""Inventories for unit tests, built from TOML text."""

from __future__ import annotations

from pathlib import Path

from ccie_remote.inventory import Fleet, parse

GUIDE = """
[proxy]
http = "http://10.0.0.33:3128"
[github]
host = "ghe.example.com"
[services]
host = "10.0.1.238"
[[builders]]
host = "10.0.2.4"
[[builders]]
host = "10.0.2.5"
docker = true
"""


def fleet(extra_proxy: str = "", text: str = GUIDE) -> Fleet:
    """The vendor guide's fleet, with extra lines added to its [proxy] table."""
    return parse(text.replace("[github]", extra_proxy + "\n[github]", 1), Path("inv.toml"))
