from __future__ import annotations

import base64
import io

import pytest

from ccie_remote import masking, render
from ccie_remote.errors import HostError, InventoryError, UsageError
from ccie_remote.remote import apply
from ccie_remote.remote.plan import plan_host
from ccie_remote.remote.provision import resolve_passphrase
from ccie_remote.remote.shell import LineStream
from ccie_remote.remote.state import HostState, parse_state, read_script
from ccie_remote.report import HostResult, Reporter, summary
from ccie_remote.tasks.builders import with_builder
from ccie_remote.tasks.provision import select_hosts

from .helpers import GUIDE, fleet


def state_output(files: dict[str, str | None], **facts: str) -> str:
    lines = []
    for path, text in files.items():
        if text is None:
            lines.append(f"=absent {path}")
        else:
            encoded = base64.b64encode(text.encode()).decode()
            lines += [f"=file {path}", encoded[:10], encoded[10:], "=end"]
    facts.setdefault("installed", "no")
    lines += [f"=fact {k} {v}" for k, v in facts.items()]
    return "\n".join(lines) + "\n"


def test_state_round_trip() -> None:
    output = state_output(
        {"/etc/environment": "A=1\n", "/etc/replicated.conf": None}, replicated="yes"
    )
    state = parse_state("h", output)
    assert state.files == {"/etc/environment": "A=1\n", "/etc/replicated.conf": None}
    assert state.replicated_installed and not state.installed


def test_state_cut_short_is_an_error() -> None:
    with pytest.raises(HostError, match="cut short"):
        parse_state("h", "=file /etc/environment\nQQ==\n")


def test_read_script_names_each_path_and_fact() -> None:
    parsed = fleet()
    script = read_script(parsed.services, ["/etc/environment", "/etc/replicated.conf"])
    assert "/etc/environment /etc/replicated.conf" in script
    assert "=fact installed" in script and "installed-services" in script
    assert "installed-builder" in read_script(parsed.builders[0], ["/etc/environment"])
    assert "rm -f" not in script  # a read-only command (dry run, status) deletes nothing
    assert "rm -f /var/lib/ccie-remote/installer.env" in read_script(
        parsed.services, [], cleanup=True
    )


def test_fresh_services_box_plan() -> None:
    parsed = fleet()
    state = HostState(
        {"/etc/environment": "", "/etc/replicated.conf": None, "/etc/default/replicated": None},
        {"installed": "no"},
    )
    plan = plan_host(parsed, parsed.services, state)
    assert list(plan.changes) == ["/etc/environment", "/etc/replicated.conf"]
    assert plan.install and not plan.restart_replicated
    actions = plan.actions(parsed)
    assert actions[-1].startswith("download https://s3.amazonaws.com/circleci-enterprise/init-")
    assert "+HTTP_PROXY=" in plan.diff()


def test_in_step_host_needs_nothing() -> None:
    parsed = fleet()
    files: dict[str, str | None] = {
        "/etc/environment": None,
        "/etc/replicated.conf": None,
        "/etc/default/replicated": 'REPLICATED_OPTS=""\n',
    }
    files = {**files, **render.render_host(parsed, parsed.services, files)}
    state = HostState(files, {"installed": "yes", "replicated": "yes"})
    plan = plan_host(parsed, parsed.services, state)
    assert plan.empty and plan.actions(parsed) == []


def test_changed_settings_restart_replicated_only_when_installed() -> None:
    parsed = fleet()
    files = {"/etc/environment": "", "/etc/replicated.conf": "{}\n"}
    installed = plan_host(
        parsed, parsed.services, HostState(dict(files), {"installed": "yes", "replicated": "yes"})
    )
    assert installed.restart_replicated and not installed.install
    assert (
        "restart replicated: stop replicated, stop replicated-agent, start "
        "replicated-agent, start replicated" in installed.actions(parsed)
    )


def test_docker_builder_restarts_docker_only_when_present() -> None:
    parsed = fleet()
    docker_builder = parsed.builders[1]
    files = {"/etc/environment": None, render.DOCKER_DROPIN: None}
    with_docker = plan_host(
        parsed, docker_builder, HostState(dict(files), {"installed": "yes", "docker": "yes"})
    )
    without = plan_host(parsed, docker_builder, HostState(dict(files), {"installed": "yes"}))
    assert with_docker.restart_docker and not without.restart_docker
    assert "docker is not installed: the drop-in applies when it starts" in without.actions(parsed)


def test_diff_masks_credentials() -> None:
    text = GUIDE.replace("http://10.0.0.33", "http://alice:hunter22@10.0.0.33")
    parsed = fleet(text=text)
    plan = plan_host(
        parsed, parsed.builders[0], HostState({"/etc/environment": None}, {"installed": "yes"})
    )
    assert "hunter22" not in plan.diff() and "***@10.0.0.33" in plan.diff()


def test_installer_environment_and_scripts() -> None:
    parsed = fleet()
    run = apply.installer_run(parsed, parsed.builders[0], "pass-phrase-1")
    assert run.environment["SERVICES_PRIVATE_IP"] == "10.0.1.238"
    assert run.environment["https_proxy"] == "http://10.0.0.33:3128"
    assert run.script_path == "/var/lib/ccie-remote/init-builder-0.2.sh"
    assert "pass-phrase-1" in apply.prepare_installer_script(run)
    command = apply.run_installer_script(run)
    assert "pass-phrase-1" not in command and "rm -f /var/lib/ccie-remote/installer.env" in command
    builder = apply.builder_install_script(run)
    assert "export CIRCLE_SECRET_PASSPHRASE=pass-phrase-1" in builder
    assert "bash /var/lib/ccie-remote/init-builder-0.2.sh </dev/null" in builder
    assert builder.rstrip().endswith("touch /var/lib/ccie-remote/installed-builder")
    assert "installer.env" not in builder  # the passphrase never touches a file


def test_write_script_is_atomic_and_backs_up() -> None:
    script = apply.write_files_script({"/etc/environment": "A=1\n"}, "S1")
    assert 'mktemp "$f.ccie-new.XXXXXX"' in script and 'mv -f "$tmp" "$f"' in script
    assert 'cp -p "$f" "$backup$f"' in script and 'ln -sfn "S1"' in script
    assert base64.b64encode(b"A=1\n").decode() in script


def test_prompts_overridable_from_config() -> None:
    class Config:
        class ccie:  # noqa: N801 - shaped like Invoke's config attribute access
            prompts = {"proxy_address": "Proxy URL:"}

    prompts = apply.prompts_from_config(Config())
    assert prompts["proxy_address"] == "Proxy URL:"
    assert prompts["proxy_question"] == apply.DEFAULT_PROMPTS["proxy_question"]
    assert apply.prompts_from_config(object()) == apply.DEFAULT_PROMPTS


def test_passphrase_sources() -> None:
    assert resolve_passphrase("from-env", False, lambda: "x") == "from-env"
    assert resolve_passphrase(None, True, lambda: "typed") == "typed"
    with pytest.raises(UsageError, match="CIRCLE_SECRET_PASSPHRASE"):
        resolve_passphrase(None, False, lambda: "never asked")


def test_line_stream_masks_and_splits() -> None:
    masking.register("sekret-value")
    seen: list[str] = []
    stream = LineStream(seen.append)
    stream.write("one\r\ntwo sekret-value\nthr")
    stream.flush()
    assert seen == ["one", "two ***", "thr"]


def test_reporter_plain_lines_and_summary() -> None:
    out = io.StringIO()
    reporter = Reporter(["a:1", "b:2"], stream=out, live=False)
    reporter.line("a:1", "writing http://u:pw@p:1")
    assert out.getvalue() == "[a:1] writing http://***@p:1\n"
    table = summary(
        [
            HostResult("a:1", "services", "changed", "write x", 1.25),
            HostResult("b:2", "builder", "failed", "unreachable", 0.5),
        ]
    )
    assert table.splitlines()[0].split() == ["HOST", "ROLE", "RESULT", "SECONDS", "WHY"]
    assert table.splitlines()[2].split()[:4] == ["b:2", "builder", "failed", "0.5"]


def test_select_hosts() -> None:
    parsed = fleet()
    assert select_hosts(parsed, []) == list(parsed.hosts)
    assert select_hosts(parsed, ["10.0.2.5"]) == [parsed.builders[1]]
    with pytest.raises(UsageError, match="no such host"):
        select_hosts(parsed, ["10.9.9.9"])


def test_with_builder_keeps_comments() -> None:
    text = "# my fleet\n" + GUIDE.replace("[services]", "[services]  # the box")
    new = with_builder(text, "10.0.2.6", 2222, "", True)
    assert new.startswith(text)
    assert new.endswith('[[builders]]\nhost = "10.0.2.6"\nport = 2222\ndocker = true\n')
    with pytest.raises(InventoryError, match="not a valid host"):
        with_builder(text, "bad;host", 0, "", False)
