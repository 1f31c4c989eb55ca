"""Entry point: build + validate a config, then run it here (CPU / GPU / one TPU VM / pod worker),
or on every worker of a TPU pod / list of hosts (``--tpu`` / ``--hosts``: cambrian/pod/).

    python launch/tpu.py --config encoders/dinov2.py:runlocal --workdir runs/dinov2-local
    python launch/tpu.py --config encoders/dinov2.py --workdir gs://BUCKET/runs/x --config.seed=1
    python launch/tpu.py --config connectors/sva.py --workdir /tmp/x --dry-run --topology v4-128
    python launch/tpu.py --config encoders/dinov2.py:v4-128 --workdir gs://BUCKET/runs/x \
        --tpu NAME --zone us-central2-b --accelerator v4-128 [--create --version RUNTIME]

Every ``--config.a.b=value`` overrides one field of the resolved config; unknown keys are errors.
With ``--tpu`` / ``--hosts`` the launcher runs this same command on every worker (README, "Running
on a TPU pod"); a worker's process runs it without them. CPU/GPU clusters under a scheduler add
``--coordinator HOST:PORT --num-processes N --process-id I``. ``--dry-run`` compiles
the train step on abstract shapes for the configured mesh (no weights are read) and prints
per-device memory and FLOPs. Exit status 143 means a SIGTERM checkpoint was written: rerunning
the same command resumes. An error the user can fix (a config, a missing file, a bad record, a
NaN loss) ends the run with one line naming the file, record or step and the fix, and exit
status 2 (before the model is built) or 1 (after); ``--traceback`` (or ``CAMBRIAN_TRACEBACK=1``)
shows the full traceback instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

PREEMPTED = 143


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    overrides = [a for a in argv if a.startswith("--config.")]
    rest = [a for a in argv if not a.startswith("--config.")]
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", required=True,
                   help="configs/ path, e.g. encoders/dinov2.py:runlocal")
    p.add_argument("--workdir", default="", help="output directory (local or gs://)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("--skip-eval", action="store_true", help="train (or resume) only; no benchmarks")
    p.add_argument("--dry-run", action="store_true",
                   help="compile the train step on abstract shapes; print per-device memory/FLOPs")
    p.add_argument("--topology", default="",
                   help="dry run for a TPU slice not attached here, e.g. v4-128, v5p-128")
    p.add_argument("--stage", default="",
                   help="dry run: which stage (default: the last with steps)")
    p.add_argument("--coordinator", default=os.environ.get("CAMBRIAN_COORDINATOR", ""),
                   help="HOST:PORT of process 0 (CPU/GPU clusters; TPU pods are detected)")
    p.add_argument("--num-processes", type=int,
                   default=int(os.environ.get("CAMBRIAN_NUM_PROCESSES", "0")))
    p.add_argument("--process-id", type=int,
                   default=int(os.environ.get("CAMBRIAN_PROCESS_ID", "-1")))
    p.add_argument("--traceback", action="store_true",
                   default=os.environ.get("CAMBRIAN_TRACEBACK", "") not in ("", "0"),
                   help="on an error, show the traceback instead of one line")
    from cambrian.pod import launch as pod

    pod.add_arguments(p)
    args = p.parse_args(rest)
    if pod.wanted(args):
        return pod.main(args, overrides)
    if not (args.workdir or args.print_config or args.dry_run):
        p.error("--workdir is required")

    from cambrian import config as config_lib
    from cambrian import preflight

    try:
        config = config_lib.load(args.config, overrides)
        with config.unlocked():
            config.workdir = args.workdir
        config_lib.adopt_model(config)
        if args.print_config:
            print(config_lib.to_json(config))
            return 0
        if not args.dry_run:
            preflight.check(config, evaluate=not args.skip_eval)
    except (config_lib.ConfigError, preflight.PreflightError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    from cambrian import runlog

    if args.dry_run:
        runlog.setup_logging(0)
        if args.topology and not _tpu_attached():
            _fake_cpu_devices(args.topology)
        from cambrian import aot

        print(json.dumps(aot.dry_run(config, topology=args.topology, stage=args.stage), indent=2))
        return 0

    import jax

    from cambrian import distributed

    distributed.initialize(args.coordinator, args.num_processes, args.process_id)
    runlog.setup_logging(jax.process_index())
    print(f"config {config.name} ({config_lib.config_hash(config)}) -> {args.workdir}")
    from cambrian import train

    try:
        train.run(config, args.workdir, evaluate=not args.skip_eval)
    except distributed.Preempted as e:
        print(e, file=sys.stderr)
        return PREEMPTED
    except _user_errors() as e:
        if args.traceback:
            raise
        print("error: " + " ".join(str(e).split()), file=sys.stderr)
        return 1
    return 0


def _user_errors() -> tuple[type[Exception], ...]:
    """Errors whose message names what is wrong and the fix: shown as one line."""
    from cambrian import config, preflight, runlog
    from cambrian.data import images, readers, recipe
    from cambrian.eval.benchmarks import common
    from cambrian.models import weights

    return (runlog.RunError, readers.DataError, images.ImageError, recipe.RecipeError,
            common.DataFormatError, weights.CheckpointError, config.ConfigError,
            preflight.PreflightError)


def _tpu_attached() -> bool:
    return os.path.exists("/dev/accel0") or os.path.exists("/dev/vfio/0")


def _fake_cpu_devices(topology: str) -> None:
    """A dry run for a slice that is not here compiles for as many CPU devices (set before JAX
    starts)."""
    from cambrian.aot import parse_topology

    chips, _ = parse_topology(topology)
    os.environ["JAX_PLATFORMS"] = "cpu"
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + f" --xla_force_host_platform_device_count={chips}")


if __name__ == "__main__":
    sys.exit(main())
