"""Multi-host start-up and preemption.

On a TPU pod every worker runs the same command; :func:`initialize` finds the pod from the TPU
runtime's environment and calls ``jax.distributed.initialize()`` (coordinator, process count and
ids are discovered). CPU and GPU clusters name a coordinator explicitly (``HOST:PORT``, the number
of processes and this process's id); SLURM and Open MPI jobs are detected by JAX itself.

SIGTERM (what TPU maintenance events, Kubernetes and SLURM send before killing a job) sets a flag
that the trainer polls after every step: it writes a checkpoint at that step and stops with
:class:`Preempted`; relaunching the same command resumes from it. On several processes JAX's
preemption sync point makes every host stop at the same step.
"""

from __future__ import annotations

import logging
import os
import signal

import jax

log = logging.getLogger("cambrian")

_CLUSTER_ENV = ("SLURM_JOB_ID", "OMPI_COMM_WORLD_SIZE")


def _on_tpu_pod() -> bool:
    hosts = os.environ.get("TPU_WORKER_HOSTNAMES", "")
    return "," in hosts or bool(os.environ.get("MEGASCALE_COORDINATOR_ADDRESS"))


def initialize(coordinator: str = "", num_processes: int = 0, process_id: int = -1) -> bool:
    """Starts ``jax.distributed`` when this process is one of several; returns whether it did.

    Call before anything touches a JAX device. ``coordinator`` ("HOST:PORT"), ``num_processes``
    and ``process_id`` are needed only on CPU/GPU clusters that JAX cannot detect; on one
    machine with none of them this is a no-op.
    """
    if jax.distributed.is_initialized():
        return True
    if coordinator:
        if num_processes < 1 or not 0 <= process_id < num_processes:
            raise ValueError(f"distributed: coordinator {coordinator!r} needs num_processes >= 1 "
                             f"and 0 <= process_id < num_processes (got {num_processes}, "
                             f"{process_id})")
        # CPU collectives across processes need gloo; the setting is ignored by TPU/GPU clients.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                                   process_id=process_id)
    elif _on_tpu_pod() or any(k in os.environ for k in _CLUSTER_ENV):
        jax.distributed.initialize()
    else:
        return False
    return True


class Preempted(Exception):  # noqa: N818 -- a signal, not a failure
    """Raised after the checkpoint that a SIGTERM asked for has been written."""

    def __init__(self, step: int):
        super().__init__(f"preempted: checkpoint written at step {step}; rerun the same command "
                         "to resume")
        self.step = step


class PreemptionWatch:
    """Polled once per step: ``reached(step)`` is True at the step every process stops at."""

    def __init__(self):
        self.requested = False
        self._previous = None
        # Several processes: JAX's coordination service owns SIGTERM and the sync point.
        if jax.process_count() == 1:
            try:
                self._previous = signal.signal(signal.SIGTERM, self._handle)
            except ValueError:  # not the main thread: nothing to install, nothing to watch
                self._previous = None

    def _handle(self, signum, frame) -> None:
        log.warning("SIGTERM: will checkpoint after the current step and stop")
        self.requested = True

    def reached(self, step: int) -> bool:
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            return bool(multihost_utils.reached_preemption_sync_point(step))
        return self.requested

    def close(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None
