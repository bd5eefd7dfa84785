"""Measure ccie-remote, Ansible and pyinfra doing `fab provision`'s job on the same lab fleets.

For each fleet size (1 services box + N builders) and sample, each tool in turn (the order
rotates from sample to sample) gets a fresh lab and is timed, from process start to exit, on:

    first    a first provision of the fresh lab (installers included)
    rerun    a second run on the unchanged fleet: nothing may change
    change   a run after the inventory's proxy URL changed (files, ordered restarts)

After each run the hosts are read back (`docker exec`) and compared with what ccie-remote
renders; a tool that did less than the whole job stops the benchmark. sshd's log gives each
run's SSH logins and remote commands per host. The floor (bench/floor.py: one connection and
one read per host, all at once, interpreter start-up included) is timed on every lab.

    python bench/run.py                               # a quick try: 1+4, one sample
    python bench/run.py --sizes 4 8 16 --samples 3    # the full measurement
    python bench/run.py --trace 16                    # where ccie-remote spends its time

Results go to bench/results/STAMP/ (results.json, report.md, every run's output).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import checks
import tools
from tools import BENCH, REPO, TOOLS

from ccie_remote.lab import Lab, down, up

SCENARIOS = ("first", "rerun", "change")
LAB_PROXY = "http://proxy.lab.test:3128"
LIBRARY_LINE = re.compile(r"^\s*[\d.]+ (?:DEBUG|INFO|WARNING) (?:invoke|fabric|paramiko)")
LOG_MARGIN = 1.0  # seconds of sshd log kept after a run ends (docker stamps lines on arrival)


@dataclass
class Measurement:
    """One timed run: which tool, fleet size, scenario and sample; its time and SSH use."""

    tool: str
    builders: int
    scenario: str
    sample: int
    seconds: float
    load: float
    logins: dict[str, int] = field(default_factory=dict)
    commands: dict[str, int] = field(default_factory=dict)
    # First provision: builders' start spread (s), builder installers running at once (mean).
    concurrency: tuple[float, float] | None = None


# --- one lab, one tool ----------------------------------------------------------------------


def measure_tool(tool: str, builders: int, sample: int, folder: Path) -> list[Measurement]:
    """A fresh lab; the tool's first provision, no-change rerun and proxy change; the floor."""
    name = f"bench-{tool.split('-')[0]}-b{builders}"
    lab = up(
        name=name,
        builders=builders,
        docker_builders=builders // 2,
        workdir=folder / ".lab",
        inventory=folder / "lab.toml",
    )
    try:
        return run_scenarios(tool, lab, sample, folder)
    finally:
        down(name)


def run_scenarios(tool: str, lab: Lab, sample: int, folder: Path) -> list[Measurement]:
    inventory_path = lab.inventory_path
    tools.write_inputs(inventory_path, folder / "inputs")
    fleet = checks.load_fleet(inventory_path)
    builders = len(fleet.builders)

    first, run, counts = timed(tool, lab, "first", sample, folder)
    after_first = checks.snapshots(lab)
    checks.fail_if(checks.check_first(fleet, after_first), tool, "first provision", run.output)
    first.concurrency = checks.builder_concurrency(after_first, counts)

    rerun, run, _ = timed(tool, lab, "rerun", sample, folder)
    after_rerun = checks.snapshots(lab)
    problems = checks.check_unchanged(after_first, after_rerun) + reported_changes(tool, run)
    checks.fail_if(problems, tool, "no-change rerun", run.output)

    change_proxy(inventory_path, f"http://{lab.proxy().fleet_ip}:3128")
    tools.write_inputs(inventory_path, folder / "inputs")
    changed_fleet = checks.load_fleet(inventory_path)
    change, run, _ = timed(tool, lab, "change", sample, folder)
    after_change = checks.snapshots(lab)
    problems = checks.check_change(changed_fleet, after_rerun, after_change)
    checks.fail_if(problems, tool, "proxy change", run.output)

    floor_run = tools.run_floor(inventory_path, folder / f"floor-{tool}-{sample}.out")
    if floor_run.exit_code != 0:
        raise checks.JobNotDone(f"the floor failed: {floor_run.tail()}")
    floor = Measurement("floor", builders, "floor", sample, floor_run.seconds, load())
    return [first, rerun, change, floor]


def timed(
    tool: str, lab: Lab, scenario: str, sample: int, folder: Path
) -> tuple[Measurement, tools.Run, checks.Counts]:
    """Run the tool once and count the SSH logins and commands it caused on each host."""
    output = folder / f"{tool}-{scenario}-{sample}.out"
    since = time.time()
    run = tools.run_tool(tool, lab.inventory_path, folder / "inputs", output)
    until = time.time() + LOG_MARGIN
    if run.exit_code != 0:
        raise checks.JobNotDone(f"{tool} {scenario} exited {run.exit_code}:\n{run.tail()}")
    time.sleep(LOG_MARGIN)
    counts = checks.count_ssh(lab, since, until)
    builders = len(lab.builders())
    measurement = Measurement(
        tool, builders, scenario, sample, run.seconds, load(), counts.logins, counts.commands
    )
    print(f"  {tool:12} 1+{builders:<3} {scenario:7} {run.seconds:7.2f} s", flush=True)
    return measurement, run, counts


def reported_changes(tool: str, run: tools.Run) -> list[str]:
    """What the tool itself says it changed on a run that should change nothing."""
    text = run.output.read_text(encoding="utf-8", errors="replace")
    if tool == "ccie-remote":
        rows = re.findall(r"^\S+\s+(?:services|builder)\s+(\w+)\s", text, re.MULTILINE)
        return [f"ccie-remote reports {row}" for row in rows if row != "unchanged"] or (
            [] if rows else ["ccie-remote printed no summary"]
        )
    if tool == "ansible":
        recap = re.findall(r"^(\S+)\s+:\s+ok=\d+\s+changed=(\d+)", text, re.MULTILINE)
        bad = [f"ansible reports changed={n} on {host}" for host, n in recap if n != "0"]
        return bad if recap else ["ansible printed no recap"]
    total = re.search(r"Grand total\s+\d+\s+(\S+)\s+(\S+)", text)
    if total is None:
        return ["pyinfra printed no results"]
    return [] if total[1] in ("-", "0") else [f"pyinfra reports {total[1]} changes"]


def change_proxy(inventory_path: Path, url: str) -> None:
    """Point [proxy].http at the proxy's fleet address (both reach the same tinyproxy)."""
    text = inventory_path.read_text(encoding="utf-8")
    changed = text.replace(f'http = "{LAB_PROXY}"', f'http = "{url}"', 1)
    if changed == text:
        raise checks.JobNotDone(f"{inventory_path}: no [proxy].http = {LAB_PROXY!r} to change")
    inventory_path.write_text(changed, encoding="utf-8")


def load() -> float:
    return os.getloadavg()[0]


# --- the whole benchmark --------------------------------------------------------------------


def benchmark(sizes: list[int], samples: int, folder: Path) -> list[Measurement]:
    """Every size, every sample, the tools alternating (their order rotates each sample)."""
    measurements: list[Measurement] = []
    for builders in sizes:
        for sample in range(samples):
            order = TOOLS[sample % len(TOOLS) :] + TOOLS[: sample % len(TOOLS)]
            for tool in order:
                lab_folder = folder / f"b{builders}-s{sample}-{tool}"
                measurements += measure_tool(tool, builders, sample, lab_folder)
            save(folder, measurements)
    return measurements


def warm_up() -> None:
    """Start each tool once, so the first timed run does not pay for a cold page cache."""
    venv = tools.VENV / "bin"
    for args in (
        [sys.executable, "-m", "fabric", "--list"],
        [str(venv / "ansible-playbook"), "--version"],
        [str(venv / "pyinfra"), "--version"],
        [sys.executable, "-c", "import paramiko"],
    ):
        subprocess.run(args, cwd=REPO, capture_output=True, check=False)


def save(folder: Path, measurements: list[Measurement]) -> None:
    data = {"machine": MACHINE, "measurements": [asdict(m) for m in measurements]}
    (folder / "results.json").write_text(json.dumps(data, indent=1), encoding="utf-8")


# --- the report -----------------------------------------------------------------------------


def seconds_of(
    measurements: list[Measurement], tool: str, builders: int, scenario: str
) -> list[float]:
    return [
        m.seconds
        for m in measurements
        if m.tool == tool and m.builders == builders and m.scenario == scenario
    ]


def ssh_use(measurements: list[Measurement], tool: str, builders: int, scenario: str) -> str:
    """Logins and commands per host: services box, then builders (median over samples)."""
    runs = [
        m
        for m in measurements
        if m.tool == tool and m.builders == builders and m.scenario == scenario
    ]
    if not runs:
        return ""

    def per_role(counts: dict[str, int], role: str) -> float:
        values = [n for host, n in counts.items() if ("services" in host) == (role == "services")]
        return statistics.mean(values) if values else 0.0

    parts = []
    for label, attribute in (("logins", "logins"), ("commands", "commands")):
        services = statistics.median(per_role(getattr(m, attribute), "services") for m in runs)
        builders_ = statistics.median(per_role(getattr(m, attribute), "builder") for m in runs)
        parts.append(f"{label} {services:g}/{builders_:g}")
    return ", ".join(parts)


def report(measurements: list[Measurement], sizes: list[int]) -> str:
    lines = [
        "Seconds from process start to exit: median (min-max) over the samples; "
        "ssh = logins/commands per host, services box / builders.",
        "",
    ]
    for builders in sizes:
        lines += size_table(measurements, builders) + [""]
    loads = [m.load for m in measurements]
    lines += [
        f"Load average (1 min) after each run: median {statistics.median(loads):.1f}, "
        f"max {max(loads):.1f}.",
        "",
    ]
    lines += targets(measurements, max(sizes))
    return "\n".join(lines)


def size_table(measurements: list[Measurement], builders: int) -> list[str]:
    """One fleet size: times and ratios, SSH use, and how concurrent the builders were."""
    floor = seconds_of(measurements, "floor", builders, "floor")
    header = (
        f"### 1 services box + {builders} builders (floor {summary(floor)}, {len(floor)} samples)"
    )
    return [
        header,
        "",
        *time_rows(measurements, builders, floor),
        "",
        *ssh_rows(measurements, builders),
        "",
        *concurrency_rows(measurements, builders),
    ]


def time_rows(measurements: list[Measurement], builders: int, floor: list[float]) -> list[str]:
    lines = [
        "| run | ccie-remote | Ansible | pyinfra | ours/Ansible | ours/pyinfra | ours/floor |",
        "|---|---|---|---|---|---|---|",
    ]
    for scenario in SCENARIOS:
        times = {tool: seconds_of(measurements, tool, builders, scenario) for tool in TOOLS}
        if not all(times.values()):
            continue
        ours = statistics.median(times["ccie-remote"])
        ratios = [
            ours / statistics.median(times["ansible"]),
            ours / statistics.median(times["pyinfra"]),
            ours / statistics.median(floor) if floor else float("nan"),
        ]
        cells = [summary(times[tool]) for tool in TOOLS] + [f"{r:.2f}" for r in ratios]
        lines.append(f"| {scenario} | " + " | ".join(cells) + " |")
    return lines


def ssh_rows(measurements: list[Measurement], builders: int) -> list[str]:
    lines = ["| run | ssh: ccie-remote | ssh: Ansible | ssh: pyinfra |", "|---|---|---|---|"]
    for scenario in SCENARIOS:
        cells = [ssh_use(measurements, tool, builders, scenario) for tool in TOOLS]
        lines.append(f"| {scenario} | " + " | ".join(cells) + " |")
    return lines


def concurrency_rows(measurements: list[Measurement], builders: int) -> list[str]:
    lines = [
        "| builders, first provision | ccie-remote | Ansible | pyinfra |",
        "|---|---|---|---|",
    ]
    for label, index, unit in (("start spread", 0, " s"), ("installers at once", 1, "")):
        cells = []
        for tool in TOOLS:
            values = [
                m.concurrency[index]
                for m in measurements
                if m.tool == tool and m.builders == builders and m.concurrency
            ]
            cells.append(", ".join(f"{v:.2f}{unit}" for v in values))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def summary(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def targets(measurements: list[Measurement], builders: int) -> list[str]:
    """The issue's targets, for the largest fleet measured."""

    def median(tool: str, scenario: str) -> float:
        values = seconds_of(measurements, tool, builders, scenario)
        return statistics.median(values) if values else float("nan")

    rerun, first = median("ccie-remote", "rerun"), median("ccie-remote", "first")
    floor = median("floor", "floor")
    concurrency = [
        m.concurrency
        for m in measurements
        if m.tool == "ccie-remote" and m.builders == builders and m.concurrency
    ]
    # Truly concurrent: every builder began within half a second of the first (no batches, no
    # queue), and on average at least half the builder installers ran at the same time.
    concurrent = bool(concurrency) and all(
        spread <= 0.5 and at_once >= builders / 2 for spread, at_once in concurrency
    )
    rows = [
        ("rerun <= 1/2 pyinfra", rerun, 0.5 * median("pyinfra", "rerun")),
        ("rerun <= 1/10 Ansible", rerun, 0.1 * median("ansible", "rerun")),
        ("rerun <= 1.5x floor", rerun, 1.5 * floor),
        ("first <= 0.7x pyinfra", first, 0.7 * median("pyinfra", "first")),
        ("first <= 1/4 Ansible", first, 0.25 * median("ansible", "first")),
    ]
    lines = [f"### Targets, 1 services box + {builders} builders (medians)", ""]
    lines += ["| target | ours | limit | met |", "|---|---|---|---|"]
    lines += [
        f"| {what} | {ours:.2f} s | {limit:.2f} s | {'yes' if ours <= limit else 'no'} |"
        for what, ours, limit in rows
    ]
    worst = (
        f"spread <= {max(c[0] for c in concurrency):.2f} s, "
        f">= {min(c[1] for c in concurrency):.1f} installers at once"
        if concurrency
        else ""
    )
    lines.append(
        f"| builders truly concurrent | {worst} | 0.5 s, {builders / 2:g} | "
        f"{'yes' if concurrent else 'no'} |"
    )
    return lines


# --- where ccie-remote spends its time ------------------------------------------------------


def trace(builders: int, folder: Path) -> str:
    """ccie-remote with -v on a fresh lab: each output line stamped with seconds since spawn,
    and sshd's first login and last command on each host, on the same clock."""
    lab = up(
        name=f"bench-trace-b{builders}",
        builders=builders,
        docker_builders=builders // 2,
        workdir=folder / ".lab",
        inventory=folder / "lab.toml",
    )
    report_lines = []
    try:
        for scenario in ("first", "rerun"):
            report_lines += trace_run(lab, scenario, folder)
    finally:
        down(lab.name)
    return "\n".join(report_lines)


def trace_run(lab: Lab, scenario: str, folder: Path) -> list[str]:
    args, env, cwd = tools.command("ccie-remote", lab.inventory_path, folder)
    args.append("-v")
    stamped: list[str] = []
    started_wall = time.time()
    started = time.perf_counter()
    process = subprocess.Popen(
        args,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            stamped.append(f"{time.perf_counter() - started:7.3f} {line.rstrip()}")

    reader = threading.Thread(target=read)
    reader.start()
    process.wait()
    reader.join()
    total = time.perf_counter() - started
    (folder / f"trace-{scenario}.out").write_text("\n".join(stamped) + "\n", encoding="utf-8")

    time.sleep(LOG_MARGIN)
    lines = [f"## {scenario}: {total:.2f} s, exit {process.returncode}", ""]
    lines += sshd_timeline(lab, started_wall)
    lines += ["", "ccie-remote's own output, seconds since spawn:", ""]
    lines += [line for line in stamped if not LIBRARY_LINE.search(line)][:120]
    return lines + [""]


def sshd_timeline(lab: Lab, started: float) -> list[str]:
    """Per host: seconds since spawn of the login, of each command start, and of logout."""
    marks_of = {
        "Accepted publickey": "login",
        "Starting session": "cmd",
        "Close session": "end",
        "Connection closed": "bye",
    }
    lines = []
    logins: list[float] = []
    for host in checks.ssh_hosts(lab):
        marks = []
        for stamp, message in checks.sshd_log(host, started):
            short = next((v for k, v in marks_of.items() if message.startswith(k)), None)
            if short:
                marks.append(f"{short} {stamp - started:.2f}")
            if short == "login":
                logins.append(stamp - started)
        lines.append(f"- {host.container}: " + ", ".join(marks))
    if logins:
        lines[:0] = [f"First login {min(logins):.2f} s after spawn, last {max(logins):.2f} s.", ""]
    return lines


# --- the machine ----------------------------------------------------------------------------


def machine() -> dict[str, object]:
    def run(*args: str) -> str:
        result = subprocess.run(args, capture_output=True, text=True, check=False, cwd=REPO)
        return result.stdout.strip()

    meminfo = Path("/proc/meminfo").read_text().split()
    cpu = re.search(r"model name\s+:\s+(.*)", Path("/proc/cpuinfo").read_text())
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu[1] if cpu else platform.processor(),
        "memory_gib": round(int(meminfo[meminfo.index("MemTotal:") + 1]) / 2**20, 1),
        "kernel": platform.release(),
        "debian": Path("/etc/debian_version").read_text().strip(),
        "docker": run("docker", "version", "--format", "{{.Server.Version}}"),
        "commit": run("git", "rev-parse", "--short", "HEAD"),
        "work_tree_changes": run("git", "status", "--porcelain", "--", "ccie_remote").splitlines(),
        "versions": tools.versions(),
    }


MACHINE: dict[str, object] = {}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[4], help="builders per lab")
    parser.add_argument("--samples", type=int, default=1, help="samples per tool and size")
    parser.add_argument("--trace", type=int, metavar="N", help="only trace ccie-remote, 1+N")
    args = parser.parse_args(argv)

    tools.ensure_venv()
    folder = BENCH / "results" / time.strftime("%Y%m%dT%H%M%S")
    folder.mkdir(parents=True)
    MACHINE.update(machine())
    if args.trace:
        text = trace(args.trace, folder)
        (folder / "trace.md").write_text(text + "\n", encoding="utf-8")
        print(text)
        return 0

    warm_up()
    print(f"results in {folder}", flush=True)
    try:
        measurements = benchmark(args.sizes, args.samples, folder)
    except checks.JobNotDone as error:
        print(f"benchmark stopped: {error}", file=sys.stderr)
        return 1
    text = report(measurements, args.sizes)
    (folder / "report.md").write_text(text + "\n", encoding="utf-8")
    print(json.dumps(MACHINE, indent=1))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
