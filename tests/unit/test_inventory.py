from __future__ import annotations

from pathlib import Path

import pytest

from ccie_remote.errors import InventoryError
from ccie_remote.inventory import load, parse

from .helpers import GUIDE, fleet


def problems(text: str) -> list[str]:
    with pytest.raises(InventoryError) as caught:
        parse(text, Path("inv.toml"))
    return caught.value.problems


def test_guide_fleet_defaults() -> None:
    parsed = fleet()
    assert parsed.proxy.http.url == "http://10.0.0.33:3128"
    assert parsed.proxy.https == parsed.proxy.http
    assert parsed.proxy.bypass_s3 and parsed.proxy.ec2 and not parsed.proxy.corporate
    assert parsed.ssh.user == "ubuntu" and parsed.ssh.port == 22
    assert parsed.ssh.host_key_policy == "accept-new"
    assert parsed.services.private_ip == "10.0.1.238"
    assert [b.docker for b in parsed.builders] == [False, True]
    assert parsed.install.builder_script.endswith("/init-builder-0.2.sh")


def test_bare_host_port_means_http() -> None:
    text = GUIDE.replace('"http://10.0.0.33:3128"', '"10.0.0.33:3128"')
    assert parse(text, Path("x")).proxy.http.url == "http://10.0.0.33:3128"


def test_ssh_port_default_and_override() -> None:
    text = GUIDE.replace("[services]", "[ssh]\nport = 2200\n[services]").replace(
        'host = "10.0.2.4"', 'host = "10.0.2.4"\nport = 2201'
    )
    parsed = parse(text, Path("x"))
    assert [h.port for h in parsed.hosts] == [2200, 2201, 2200]
    assert parsed.builders[0].name == "10.0.2.4:2201"


def test_relative_key_file_is_anchored_at_the_inventory(tmp_path: Path) -> None:
    text = GUIDE.replace("[services]", '[ssh]\nkey_file = "keys/id"\n[services]')
    parsed = parse(text, tmp_path / "inv.toml")
    assert parsed.ssh.key_file == tmp_path / "keys" / "id"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ('host = "ghe.example.com"', 'host = "ghe.example.com; touch /tmp/x"'),
            "[github].host: 'ghe.example.com; touch /tmp/x' is not a valid host name",
        ),
        (
            ('host = "10.0.1.238"', 'host = "10.0.1.238"\nport = 0'),
            "[services].port: port 0 is out of range 1-65535",
        ),
        (
            ('host = "10.0.1.238"', 'host = "10.0.1.238"\nport = "22"'),
            "[services].port: expected a port number, got '22'",
        ),
        (
            ('http = "http://10.0.0.33:3128"', 'http = "ftp://10.0.0.33:21"'),
            "[proxy].http: proxy scheme 'ftp' is not supported",
        ),
        (
            ('http = "http://10.0.0.33:3128"', 'http = "http://10.0.0.33"'),
            "[proxy].http: 'http://10.0.0.33' has no port",
        ),
        (
            ('http = "http://10.0.0.33:3128"', 'http = "http://u:p$(id)@10.0.0.33:3128"'),
            "[proxy].http: proxy credentials may only hold",
        ),
        (
            ('http = "http://10.0.0.33:3128"', 'htp = "http://10.0.0.33:3128"'),
            "[proxy].htp: unknown key (did you mean 'http'?)",
        ),
        (
            ("docker = true", "dockr = true"),
            "[[builders]] #2.dockr: unknown key (did you mean 'docker'?)",
        ),
        (
            ("[services]", '[ssh]\nhost_key_policy = "yes"\n[services]'),
            '[ssh].host_key_policy: expected "strict" or "accept-new"',
        ),
        (
            ("[services]", '[ssh]\ngateway = "me@bastion;rm"\n[services]'),
            "[ssh].gateway: 'bastion;rm' is not a valid host name",
        ),
        (
            ("[services]", '[install]\nbuilder_script = "http://x.test/a b"\n[services]'),
            "[install].builder_script:",
        ),
        (
            ("[services]", '[install]\nbuilder_script = "file:///etc/passwd"\n[services]'),
            "[install].builder_script: 'file:///etc/passwd' is not an http:// or https:// URL",
        ),
        (
            ("docker = true", 'docker = "yes"'),
            "[[builders]] #2.docker: expected true or false, got 'yes'",
        ),
        (
            ('host = "10.0.2.5"', 'host = "10.0.2.4"'),
            "builder 10.0.2.4: duplicate host (same address and port as the builder entry)",
        ),
        (
            ("[github]", 'no_proxy = ["10.0.0.0/33"]\n[github]'),
            "[proxy].no_proxy: '10.0.0.0/33' is not a valid CIDR range",
        ),
    ],
)
def test_each_invalid_field_is_named(change: tuple[str, str], expected: str) -> None:
    found = problems(GUIDE.replace(*change))
    assert any(expected in line for line in found), found
    assert all(line.startswith("inv.toml: ") for line in found)


def test_same_address_other_port_is_not_a_duplicate() -> None:
    text = GUIDE.replace('host = "10.0.2.5"', 'host = "10.0.2.4"\nport = 2222')
    assert len(parse(text, Path("x")).builders) == 2


def test_every_problem_reported_at_once() -> None:
    text = GUIDE.replace('"ghe.example.com"', '"bad host"').replace(
        'host = "10.0.1.238"', 'host = "10.0.1.238"\nport = 99999\ncolour = 1'
    )
    assert len(problems(text)) == 3


def test_missing_tables_and_keys() -> None:
    found = problems("[proxy]\n[services]\nport = 22\n")
    assert "inv.toml: [github]: missing table" in found
    assert "inv.toml: [proxy].http: missing (the proxy URL, e.g. http://10.0.0.33:3128)" in found
    assert "inv.toml: [services].host: missing" in found


def test_syntax_error_gives_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "inv.toml"
    path.write_text('[proxy]\nhttp = "http://x:1\n')
    with pytest.raises(InventoryError) as caught:
        load(path)
    (line,) = caught.value.problems
    assert line.startswith(f"{path}:2:") and "TOML syntax error" in line


def test_missing_file_says_how_to_point_at_one(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match=r"give --inventory PATH or set \$CCIE_INVENTORY"):
        load(tmp_path / "nope.toml")


def test_credentials_are_masked_but_kept() -> None:
    parsed = fleet().proxy.http
    text = GUIDE.replace("http://10.0.0.33", "http://alice:s3cr%40t@10.0.0.33")
    proxy = parse(text, Path("x")).proxy.http
    assert proxy.url == "http://alice:s3cr%40t@10.0.0.33:3128"
    assert str(proxy) == proxy.masked == "http://***@10.0.0.33:3128"
    assert "s3cr" not in repr(parsed)
    assert "s3cr@t" in parse(text, Path("x")).secrets()


def test_invalid_proxy_url_message_masks_credentials() -> None:
    text = GUIDE.replace('"http://10.0.0.33:3128"', '"http://alice:hunter2@10.0.0.33:99x"')
    found = problems(text)
    assert not any("hunter2" in line for line in found), found


def test_only_selector_matches_host_or_host_port() -> None:
    text = GUIDE.replace('host = "10.0.2.4"', 'host = "10.0.2.4"\nport = 2201')
    builder = parse(text, Path("x")).builders[0]
    assert builder.matches("10.0.2.4") and builder.matches("10.0.2.4:2201")
    assert not builder.matches("10.0.2.4:22")


def test_example_inventory_is_valid() -> None:
    example = Path(__file__).parents[2] / "inventory.example.toml"
    parsed = load(example)
    assert parsed.services.host == "10.0.1.238" and len(parsed.builders) == 2
    assert parsed.github_host == "ghe.example.com"
    assert parsed.proxy.http.host_port == "10.0.0.33:3128"
