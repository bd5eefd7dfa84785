"""The lab: a rehearsal fleet of real sshd containers behind a real proxy, on the local Docker.

A lab is a services box and builders (sshd, user ``ubuntu``, SSH published on 127.0.0.1), a
tinyproxy and a web container standing for the outside world, which serves stand-in
installers with the real ones' interfaces. ``up`` writes ``lab.toml``, an inventory the tool
reads like any other; ``down`` removes what ``up`` made and nothing else.
"""

from ccie_remote.lab.docker import engine_answers
from ccie_remote.lab.fleet import DEFAULT_NAME, down, load, status, up
from ccie_remote.lab.model import Lab, LabEvent, LabHost, ProxyRequest, SshResult
from ccie_remote.lab.poll import wait_for

__all__ = [
    "DEFAULT_NAME",
    "Lab",
    "LabEvent",
    "LabHost",
    "ProxyRequest",
    "SshResult",
    "down",
    "engine_answers",
    "load",
    "status",
    "up",
    "wait_for",
]
