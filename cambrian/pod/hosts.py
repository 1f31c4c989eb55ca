"""GPU (or CPU) clusters without a scheduler: the same launch over ``ssh`` to a list of hosts.

``--hosts FILE`` lists one ssh destination per line (``host`` or ``user@host``; ``#`` starts a
comment). Host I runs process I; the first host is the coordinator, reached by the others at
``HOST:8476``. Every host needs passwordless ssh from here, and the workdir must be shared by
all of them (``gs://`` or a network file system).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

from cambrian.pod.gcloud import COORDINATOR_PORT, Node
from cambrian.pod.shell import PodError, Shell

SSH = ("ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=20")


def read(path: str) -> list[str]:
    try:
        with open(os.path.expanduser(path)) as fh:
            lines = [ln.split("#", 1)[0].strip() for ln in fh]
    except OSError as e:
        raise PodError(f"--hosts {path}: {e.strerror}") from e
    hosts = [ln for ln in lines if ln]
    bad = [h for h in hosts if len(h.split()) != 1]
    if not hosts or bad:
        raise PodError(f"--hosts {path}: expected one ssh destination per line (host or "
                       f"user@host), got {bad or 'no hosts'}")
    return hosts


@dataclasses.dataclass
class SshHosts:
    hosts: list[str]
    shell: Shell
    poll_seconds: float = 10.0

    @property
    def name(self) -> str:
        return f"{len(self.hosts)} hosts ({self.hosts[0]}, ...)"

    def node(self) -> Node:
        return Node("READY", "", tuple(h.rsplit("@", 1)[-1] for h in self.hosts))

    def healthy(self) -> bool:
        if self.shell.dry_run:
            return True
        return all(self.shell.run([*SSH, h, "true"], check=False, quiet=True).returncode == 0
                   for h in self.hosts)

    def recover(self, created: bool) -> bool:
        return self.healthy()

    def copy_to_all(self, local: str, remote: str) -> list[list[str]]:
        return [["scp", "-q", "-o", "BatchMode=yes", local, f"{h}:{remote}"] for h in self.hosts]

    def on_all(self, command: Callable[[int | None], str], node: Node) -> list[list[str]]:
        return [[*SSH, h, command(i)] for i, h in enumerate(self.hosts)]

    def coordinator(self, node: Node) -> str:
        return f"{node.ips[0]}:{COORDINATOR_PORT}" if node.workers > 1 else ""
