from __future__ import annotations

import json
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ccie_remote import render
from ccie_remote.bypass import JAVA_DEFAULTS, Entry
from ccie_remote.errors import ManagedFileError
from ccie_remote.inventory import Fleet
from ccie_remote.render import BEGIN, END, parse_environment

from .helpers import fleet

UBUNTU_ENVIRONMENT = 'PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"\n'
GUIDE_APPENDED = """HTTP_PROXY=10.0.0.33:3128
HTTPS_PROXY=10.0.0.33:3128
NO_PROXY=169.254.169.254,10.0.1.238,127.0.0.1,localhost,ghe.sphereci.com
JVM_OPTS="-Dhttp.proxyHost=10.0.0.33 -Dhttp.proxyPort=3128 $JVM_OPTS"

"""


def test_block_holds_both_cases_and_jvm_opts() -> None:
    text = render.environment(fleet(), UBUNTU_ENVIRONMENT)
    values = parse_environment(text)
    assert values["PATH"].startswith("/usr/local/sbin")
    assert values["HTTP_PROXY"] == values["http_proxy"] == "http://10.0.0.33:3128"
    assert values["HTTPS_PROXY"] == values["https_proxy"] == "http://10.0.0.33:3128"
    assert values["NO_PROXY"] == values["no_proxy"]
    assert "$" not in values["JVM_OPTS"]
    assert values["JVM_OPTS"].split() == [
        "-Dhttp.proxyHost=10.0.0.33",
        "-Dhttp.proxyPort=3128",
        "-Dhttps.proxyHost=10.0.0.33",
        "-Dhttps.proxyPort=3128",
        "-Dhttp.nonProxyHosts="
        + "|".join(
            [
                *JAVA_DEFAULTS,
                "127.0.0.1",
                "10.0.1.238",
                "ghe.example.com",
                "169.254.169.254",
                "s3.amazonaws.com",
                "*.s3.amazonaws.com",
            ]
        ),
    ]
    assert text.startswith(UBUNTU_ENVIRONMENT)
    assert text.count(BEGIN) == 1 and text.count(END) == 1


def test_jvm_ports_come_from_the_urls() -> None:
    parsed = fleet('https = "https://10.0.0.34:8443"')
    opts = render.jvm_opts(parsed)
    assert "-Dhttps.proxyHost=10.0.0.34 -Dhttps.proxyPort=8443" in opts
    assert "-Dhttp.proxyPort=3128" in opts


def test_earlier_manual_append_is_commented_out_once() -> None:
    text = render.environment(fleet(), UBUNTU_ENVIRONMENT + GUIDE_APPENDED)
    values = parse_environment(text)
    assert values["HTTP_PROXY"] == "http://10.0.0.33:3128"
    assert "ghe.sphereci.com" not in values["NO_PROXY"]
    assert text.count(render.SUPERSEDED) == 4
    assert render.SUPERSEDED + "HTTP_PROXY=10.0.0.33:3128\n" in text
    assert render.environment(fleet(), text) == text


def test_block_replaced_in_place_and_lines_after_kept() -> None:
    first = render.environment(fleet(), UBUNTU_ENVIRONMENT)
    with_tail = first + "LANG=C.UTF-8\n"
    changed = render.environment(fleet('https = "http://10.0.0.34:3128"'), with_tail)
    assert changed.endswith(END + "\nLANG=C.UTF-8\n")
    assert changed.startswith(UBUNTU_ENVIRONMENT + BEGIN)
    assert parse_environment(changed)["HTTPS_PROXY"] == "http://10.0.0.34:3128"


def test_missing_final_newline_is_not_glued_to_the_block() -> None:
    text = render.environment(fleet(), "LANG=C")
    assert text.startswith("LANG=C\n" + BEGIN)


def test_block_without_end_is_refused() -> None:
    with pytest.raises(ManagedFileError, match="no END line"):
        render.environment(fleet(), BEGIN + "\nHTTP_PROXY=x\n")


def test_removed_takes_only_the_block() -> None:
    text = render.environment(fleet(), UBUNTU_ENVIRONMENT + GUIDE_APPENDED)
    removed = render.environment_removed(text)
    assert BEGIN not in removed and 'HTTP_PROXY="' not in removed
    assert removed.startswith(UBUNTU_ENVIRONMENT)


def test_replicated_conf_keeps_other_keys() -> None:
    current = '{"DaemonAuthenticationType": "password", "HttpProxy": "http://old:1"}'
    text = render.replicated_conf(fleet(), current)
    assert json.loads(text) == {
        "DaemonAuthenticationType": "password",
        "HttpProxy": "http://10.0.0.33:3128",
    }
    assert text.endswith("}\n")
    assert render.replicated_conf(fleet(), text) == text
    assert json.loads(render.replicated_conf(fleet(), None)) == {
        "HttpProxy": "http://10.0.0.33:3128"
    }
    assert json.loads(render.replicated_conf_removed(text)) == {
        "DaemonAuthenticationType": "password"
    }


@pytest.mark.parametrize("current", ["{not json", "[1, 2]"])
def test_replicated_conf_not_an_object_is_refused(current: str) -> None:
    with pytest.raises(ManagedFileError, match="/etc/replicated.conf"):
        render.replicated_conf(fleet(), current)


def test_replicated_default_keeps_other_options() -> None:
    current = (
        "RELEASE_CHANNEL=stable\n"
        'REPLICATED_OPTS="-e LOG_LEVEL=info -e HTTP_PROXY=http://old:1 -e NODENAME=a"\n'
    )
    text = render.replicated_default(fleet(), current)
    assert text.startswith("RELEASE_CHANNEL=stable\n")
    opts = parse_environment(text)["REPLICATED_OPTS"].split()
    assert opts[:4] == ["-e", "LOG_LEVEL=info", "-e", "NODENAME=a"]
    assert "HTTP_PROXY=http://10.0.0.33:3128" in opts and "HTTP_PROXY=http://old:1" not in opts
    assert f"NO_PROXY={render.bypass.no_proxy(fleet())}" in opts
    assert render.replicated_default(fleet(), text) == text
    assert render.replicated_default_removed(text) == (
        'RELEASE_CHANNEL=stable\nREPLICATED_OPTS="-e LOG_LEVEL=info -e NODENAME=a"\n'
    )


def test_docker_dropin_quotes_each_and_escapes_percent() -> None:
    text = render.docker_dropin(fleet('https = "http://bob:p%25w@10.0.0.33:3128"'))
    lines = text.splitlines()
    assert lines[0].startswith("# Managed by ccie-remote")
    assert lines[1] == "[Service]"
    assert lines[2].startswith('Environment="HTTP_PROXY=http://10.0.0.33:3128" "HTTPS_PROXY=')
    assert "bob:p%%25w@" in lines[2]
    assert lines[2].count('"') == 6


def test_managed_files_per_role() -> None:
    parsed = fleet()
    paths = [[m.path for m in render.managed_files(h)] for h in parsed.hosts]
    assert paths == [
        ["/etc/environment", "/etc/replicated.conf", "/etc/default/replicated"],
        ["/etc/environment"],
        ["/etc/environment", render.DOCKER_DROPIN],
    ]
    rendered = render.render_host(parsed, parsed.services, {})
    assert "/etc/default/replicated" not in rendered


def test_credentials_warn_about_java() -> None:
    parsed = fleet('https = "http://bob:pw@10.0.0.33:3128"')
    assert any("JVM_OPTS" in line for line in render.warnings(parsed))
    assert "bob" not in render.jvm_opts(parsed)


# --- properties ---------------------------------------------------------------------------------

_NAMES = ("HTTP_PROXY", "http_proxy", "NO_PROXY", "JVM_OPTS", "PATH", "LANG", "FOO")
_line = st.one_of(
    st.builds(
        lambda export, name, value: f"{export}{name}={value}",
        st.sampled_from(["", "export ", "  "]),
        st.sampled_from(_NAMES),
        st.text(alphabet=string.ascii_letters + string.digits + ":/.,=\"' $", max_size=20),
    ),
    st.text(
        alphabet=string.printable.replace("\r", "").replace("\x0b", "").replace("\x0c", ""),
        max_size=30,
    ).map(lambda t: t.replace("\n", "")),
    st.just(""),
    st.just("# a comment"),
)
_environment_text = st.builds(
    lambda lines, final: "\n".join(lines) + final,
    st.lists(_line, max_size=8),
    st.sampled_from(["", "\n"]),
)
_extra = st.lists(
    st.sampled_from(
        [
            "a.example.com",
            ".b.example.com",
            "*.c.example.com",
            "10.1.2.3",
            "fd00::2",
            "10.8.0.0/16",
            "localhost",
            "ghe.example.com",
        ]
    ),
    max_size=5,
)


def _fleet_with(extra: list[str], corporate: bool, ec2: bool, s3: bool) -> Fleet:
    lines = f"no_proxy = {extra!r}\ncorporate = {str(corporate).lower()}\n"
    lines += f"ec2 = {str(ec2).lower()}\nbypass_s3 = {str(s3).lower()}"
    return fleet(lines.replace("'", '"'))


@given(_environment_text)
def test_render_is_idempotent_and_keeps_outside_lines(current: str) -> None:
    once = render.environment(fleet(), current)
    assert render.environment(fleet(), once) == once

    outside = [line for line in current.splitlines() if line.strip() not in (BEGIN, END)]
    rendered_outside = once.split(BEGIN)[0].splitlines()
    assert len(rendered_outside) == len(outside)
    for before, after in zip(outside, rendered_outside, strict=True):
        assert after == before or after == render.SUPERSEDED + before.lstrip()


@given(_environment_text)
def test_each_variable_defined_once_with_intended_values(current: str) -> None:
    text = render.environment(fleet(), current)
    definitions = [
        line.split("=", 1)[0].strip().removeprefix("export ").strip()
        for line in text.splitlines()
        if "=" in line and not line.lstrip().startswith("#")
    ]
    for name in render.MANAGED_NAMES:
        assert definitions.count(name) == 1
    values = parse_environment(text)
    for name, value in render.environment_values(fleet()).items():
        assert values[name] == value


@given(_extra, st.booleans(), st.booleans(), st.booleans())
def test_no_proxy_and_java_describe_the_same_set(
    extra: list[str], corporate: bool, ec2: bool, s3: bool
) -> None:
    parsed = _fleet_with(extra, corporate, ec2, s3)
    from_no_proxy = {Entry.parse(e) for e in render.bypass.no_proxy(parsed).split(",")}
    java = render.bypass.java_non_proxy_hosts(parsed).split("|")
    assert java[:3] == list(JAVA_DEFAULTS)
    from_java = {Entry.parse(e) for e in java if e not in ("127.*",)}
    expressible = {e for e in from_no_proxy if e.kind != "cidr"}
    assert from_java - {Entry.parse("[::1]")} == expressible - {Entry.parse("::1")}
    assert len(render.bypass.warnings(parsed)) == len(from_no_proxy - expressible)
