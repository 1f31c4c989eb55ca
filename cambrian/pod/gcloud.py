"""A Cloud TPU slice through ``gcloud``: queued-resource create / wait / delete, state, and
``scp`` / ``ssh`` to every worker (``--worker=all``).

The slice is a queued resource and its node under one name (``--tpu NAME``). A spot slice
that is preempted goes to node state PREEMPTED and queued-resource state SUSPENDED; it is
recovered by deleting the queued resource and creating it again.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable

from cambrian import tpus
from cambrian.pod.shell import PodError, Shell

log = logging.getLogger("cambrian.pod")

COORDINATOR_PORT = 8476  # jax.distributed's default on TPU
QR_DONE = ("FAILED", "SUSPENDING", "SUSPENDED")  # a queued resource that will never be ACTIVE


@dataclasses.dataclass(frozen=True)
class Node:
    state: str  # READY, CREATING, PREEMPTED, ..., or NOT_FOUND
    accelerator: str = ""
    ips: tuple[str, ...] = ()  # internal IP of each worker, worker 0 first

    @property
    def workers(self) -> int:
        return len(self.ips)


@dataclasses.dataclass
class TpuPod:
    """``gcloud compute tpus`` commands for the slice ``name`` in ``zone`` (``project``: the
    gcloud default when empty). ``accelerator`` / ``version`` / ``spot``: what ``create``
    asks for."""

    name: str
    zone: str
    project: str
    shell: Shell
    accelerator: str = ""
    version: str = ""
    spot: bool = False
    poll_seconds: float = 30.0

    def _gcloud(self, *args: str) -> list[str]:
        where = [f"--zone={self.zone}"] + ([f"--project={self.project}"] if self.project else [])
        return ["gcloud", "compute", "tpus", *args, *where]

    # ------------------------------------------------------------------ queued resource

    def qr_state(self) -> str:
        """The queued resource's state, or NOT_FOUND."""
        r = self.shell.run(self._gcloud("queued-resources", "describe", self.name,
                                        "--format=value(state.state)"), check=False, quiet=True)
        if self.shell.dry_run:
            return "NOT_FOUND"
        return r.stdout.strip() if r.returncode == 0 and r.stdout.strip() else "NOT_FOUND"

    def create(self) -> None:
        """Queues the slice (reusing a live request of the same name) and waits until it is
        ACTIVE and its node READY."""
        state = self.qr_state()
        if state in QR_DONE:
            log.info("queued resource %s is %s: deleting it to queue a new one", self.name, state)
            self.delete()
            state = "NOT_FOUND"
        if state == "NOT_FOUND":
            self.shell.run(self._gcloud(
                "queued-resources", "create", self.name, f"--node-id={self.name}",
                f"--accelerator-type={self.accelerator}", f"--runtime-version={self.version}",
                *(["--spot"] if self.spot else [])))
        else:
            log.info("queued resource %s exists (%s): waiting for it", self.name, state)
        self.wait_active()

    def wait_active(self) -> None:
        t0, last = time.time(), None
        while not self.shell.dry_run:
            state = self.qr_state()
            if state != last:
                log.info("queued resource %s: %s (%.0f min)", self.name, state,
                         (time.time() - t0) / 60)
                last = state
            if state == "ACTIVE":
                break
            if state in QR_DONE or state == "NOT_FOUND":
                raise PodError(f"queued resource {self.name} went {state} while waiting; see "
                               f"`gcloud compute tpus queued-resources describe {self.name} "
                               f"--zone={self.zone}` for why (quota, capacity, runtime version)")
            time.sleep(self.poll_seconds)
        self.wait_ready()

    def delete(self) -> None:
        """Deletes the queued resource and its node; waits until it is gone."""
        self.shell.run(self._gcloud("queued-resources", "delete", self.name, "--force",
                                    "--quiet"))
        while not self.shell.dry_run and self.qr_state() != "NOT_FOUND":
            time.sleep(self.poll_seconds)

    # ------------------------------------------------------------------------------ node

    def node(self) -> Node:
        r = self.shell.run(self._gcloud("tpu-vm", "describe", self.name, "--format=json"),
                           check=False, quiet=True)
        if self.shell.dry_run:
            n = tpus.hosts(self.accelerator) if self.accelerator else 1
            return Node("READY", self.accelerator, tuple(f"WORKER{i}_IP" for i in range(n)))
        if r.returncode:
            return Node("NOT_FOUND")
        d = json.loads(r.stdout)
        ips = tuple(e.get("ipAddress", "") for e in d.get("networkEndpoints", []))
        return Node(d.get("state", "UNKNOWN"), d.get("acceleratorType", ""), ips)

    def wait_ready(self) -> Node:
        while True:
            node = self.node()
            if node.state == "READY" and node.workers:
                return node
            if node.state in ("PREEMPTED", "TERMINATED", "NOT_FOUND"):
                raise PodError(f"TPU {self.name} is {node.state}")
            time.sleep(self.poll_seconds)

    def healthy(self) -> bool:
        return self.node().state == "READY"

    def recover(self, created: bool) -> bool:
        """After a failure: True if the slice is usable again (recreated if it was preempted
        and this launcher may create it)."""
        node = self.node()
        if node.state == "READY":
            return True
        if not created:
            log.error("TPU %s is %s; the launcher did not create it, so it will not recreate "
                      "it: pass --create --accelerator ... --version ... to let it", self.name,
                      node.state)
            return False
        log.info("TPU %s is %s: recreating it", self.name, node.state)
        self.delete()
        self.create()
        return True

    # --------------------------------------------------------------------- every worker

    def copy_to_all(self, local: str, remote: str) -> list[list[str]]:
        """The commands copying ``local`` to ``remote`` (relative to $HOME) on every worker."""
        return [self._gcloud("tpu-vm", "scp", local, f"{self.name}:{remote}", "--worker=all",
                             "--quiet")]

    def on_all(self, command: Callable[[int | None], str], node: Node) -> list[list[str]]:
        """The commands running the shell ``command(worker id)`` on every worker: one for a TPU,
        whose workers find their own id (None)."""
        return [self._gcloud("tpu-vm", "ssh", self.name, "--worker=all", "--quiet",
                             f"--command={command(None)}")]

    def coordinator(self, node: Node) -> str:
        return f"{node.ips[0]}:{COORDINATOR_PORT}" if node.workers > 1 else ""
