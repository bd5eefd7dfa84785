from __future__ import annotations

import pytest

from ccie_remote import bypass
from ccie_remote.bypass import Entry

from .helpers import fleet

GUIDE_NO_PROXY = (
    "localhost,127.0.0.1,10.0.1.238,ghe.example.com,169.254.169.254,"
    "s3.amazonaws.com,.s3.amazonaws.com"
)


def test_guide_fleet_bypass_list() -> None:
    assert bypass.no_proxy(fleet()) == GUIDE_NO_PROXY
    assert bypass.java_non_proxy_hosts(fleet()) == (
        "localhost|127.*|[::1]|127.0.0.1|10.0.1.238|ghe.example.com|169.254.169.254|"
        "s3.amazonaws.com|*.s3.amazonaws.com"
    )


@pytest.mark.parametrize(
    ("proxy_lines", "present", "absent"),
    [
        ("ec2 = false", [], ["169.254.169.254"]),
        ("bypass_s3 = false", [], ["s3.amazonaws.com"]),
        ("corporate = true", ["10.0.2.4", "10.0.2.5"], ["s3.amazonaws.com"]),
        (
            'no_proxy = ["*.corp.example.com", "10.9.0.0/16"]',
            [".corp.example.com", "10.9.0.0/16"],
            ["*.corp"],
        ),
    ],
)
def test_flags_shape_the_set(proxy_lines: str, present: list[str], absent: list[str]) -> None:
    entries = bypass.no_proxy(fleet(proxy_lines)).split(",")
    for item in present:
        assert item in entries
    for item in absent:
        assert not any(item in entry for entry in entries)


def test_duplicates_removed_order_kept() -> None:
    text = 'no_proxy = ["ghe.example.com", "LOCALHOST", ".s3.amazonaws.com", "extra.example.com"]'
    assert bypass.no_proxy(fleet(text)) == GUIDE_NO_PROXY + ",extra.example.com"


def test_star_domain_spelled_per_consumer() -> None:
    parsed = fleet('no_proxy = ["*.corp.example.com"]')
    assert ".corp.example.com" in bypass.no_proxy(parsed).split(",")
    assert "*.corp.example.com" in bypass.java_non_proxy_hosts(parsed).split("|")
    assert "*" not in bypass.no_proxy(parsed)


def test_cidr_warns_for_java_and_stays_in_no_proxy() -> None:
    parsed = fleet('no_proxy = ["10.9.0.0/16"]')
    assert "10.9.0.0/16" not in bypass.java_non_proxy_hosts(parsed)
    (warning,) = bypass.warnings(parsed)
    assert "10.9.0.0/16" in warning and "Java" in warning


def test_ipv6_entry_bracketed_for_java() -> None:
    parsed = fleet('no_proxy = ["fd00::1"]')
    assert "fd00::1" in bypass.no_proxy(parsed).split(",")
    assert "[fd00::1]" in bypass.java_non_proxy_hosts(parsed).split("|")


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("a.example.com", "name", "a.example.com"),
        (".a.example.com", "domain", "a.example.com"),
        ("*.a.example.com", "domain", "a.example.com"),
        ("10.0.0.1", "ip", "10.0.0.1"),
        ("[::1]", "ip", "::1"),
        ("10.0.0.0/8", "cidr", "10.0.0.0/8"),
    ],
)
def test_entry_parse(text: str, kind: str, value: str) -> None:
    assert Entry.parse(text) == Entry(kind, value)
