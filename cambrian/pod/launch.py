"""``launch/tpu.py --tpu NAME`` / ``--hosts FILE``: the config on every worker, from here.

``add_arguments`` declares the flags, ``main`` runs the launch: config and memory check here,
then (slice created or found) sync -> install -> run on all workers, streaming worker 0's log,
restarting after a preemption up to ``--retries`` times; ``--delete-after`` deletes the slice at
the end. Every gcloud / ssh command is printed; ``--dry-run`` only prints them.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import logging
import os
import re
import shlex
import sys
import tempfile
import time

from cambrian.pod import bundle, settings
from cambrian.pod.shell import PodError, Shell
from cambrian.pod.worker import MARKER_RE

log = logging.getLogger("cambrian.pod")

REMOTE = "~/cambrian"  # code-<hash>/, venv-<hash>/, runs/<id>/ on every worker
ATTACH_TRIES = 3  # reattaching to a live run after a dropped connection, before a restart


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "TPU pod / several hosts",
        "run the config on every worker of a TPU slice (--tpu) or of an ssh host list "
        "(--hosts); defaults from ~/.config/cambrian/launch.toml (README)")
    g.add_argument("--tpu", default="", help="TPU (queued resource and node) name")
    g.add_argument("--zone", default="", help="its zone ($CAMBRIAN_ZONE)")
    g.add_argument("--project", default="", help="its project ($CAMBRIAN_PROJECT)")
    g.add_argument("--accelerator", default="",
                   help="slice type, e.g. v4-128: sizes the memory check and --create")
    g.add_argument("--create", action="store_true",
                   help="create the TPU as a queued resource and wait for it")
    g.add_argument("--version", default="",
                   help="TPU runtime version for --create ($CAMBRIAN_RUNTIME_VERSION)")
    g.add_argument("--spot", action="store_true", help="--create a spot (preemptible) slice")
    g.add_argument("--delete-after", action="store_true",
                   help="delete the queued resource when the run ends")
    g.add_argument("--retries", type=int, default=0,
                   help="restarts after a preemption (each resumes from the last checkpoint)")
    g.add_argument("--hosts", default="",
                   help="file of ssh hosts, one per line (GPU clusters); host 0 coordinates")
    g.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                   help="environment variable for the run on every worker (repeatable)")
    g.add_argument("--no-memory-check", action="store_true",
                   help="skip the memory check of the train step on the slice")
    g.add_argument("--no-install", action="store_true",
                   help="use the workers' python3 as it is (no venv, no install)")
    g.add_argument("--attach", action="store_true",
                   help="follow the run already going on the workers (after this launcher "
                        "was interrupted)")
    g.add_argument("--stop", action="store_true",
                   help="stop the run going on the workers (SIGTERM: it checkpoints first)")


def wanted(args: argparse.Namespace) -> bool:
    return bool(args.tpu or args.hosts)


@dataclasses.dataclass
class Outcome:
    kind: str  # ok | failed | preempted | lost | detached | busy
    rc: int
    detail: str


def classify(exits: dict[int, str], workers: int, healthy) -> Outcome:
    """What happened to a run from the workers' exit markers.

    ``healthy()`` is asked (a gcloud / ssh call) only when the markers do not tell: a worker
    that printed none lost its connection (``detached``: the run may go on) unless the slice is
    gone (``preempted``)."""
    codes = [exits.get(w) for w in range(workers)]
    rc0 = int(codes[0]) if codes[0] and codes[0].lstrip("-").isdigit() else 1
    if codes and all(c == "0" for c in codes):
        return Outcome("ok", 0, "every worker exited 0")
    if "busy" in codes:
        return Outcome("busy", 3, "a run is already live on the workers")
    if "143" in codes:
        return Outcome("preempted", 143, "SIGTERM: checkpoint written, exit 143 ("
                       + ", ".join(f"w{w}" for w, c in enumerate(codes) if c == "143") + ")")
    if "lost" in codes:
        gone = [f"w{w}" for w, c in enumerate(codes) if c == "lost"]
        return Outcome("lost", 143, f"run vanished without an exit status on {', '.join(gone)}")
    if None in codes:
        silent = [f"w{w}" for w, c in enumerate(codes) if c is None]
        if not healthy():
            return Outcome("preempted", 143, f"slice no longer READY ({', '.join(silent)} "
                           "silent)")
        return Outcome("detached", rc0, f"no exit status from {', '.join(silent)}")
    failed = [f"w{w}: {c}" for w, c in enumerate(codes) if c != "0"]
    if not healthy():
        return Outcome("preempted", 143, f"slice no longer READY ({', '.join(failed)})")
    rc = rc0 if rc0 else next(int(c) for c in codes if c != "0" and c.lstrip("-").isdigit())
    return Outcome("failed", rc, "exit " + ", ".join(failed))


class Watch:
    """Reads the workers' merged output: prints it, collects exit markers, follows worker 0's
    steps (global, over stages) to log the steps a restart loses."""

    STEP = re.compile(r"^\[w0\] .*?(stage\w+) step (\d+) loss")
    RESUMED = re.compile(r"^\[w0\] .*resuming from \S+ step (\d+)")
    CONFIG = re.compile(r"^\[w0\] .*?\bconfig \S+ \(([0-9a-f]{16})\)")

    def __init__(self, offsets: dict[str, int], config_hash: str, out=None):
        self.offsets, self.config_hash = offsets, config_hash
        self.out = out or sys.stdout
        self.exits: dict[int, str] = {}
        self.last_step: int | None = None
        self.restart: tuple[int, int | None] | None = None  # (number, last step before)

    def new_attempt(self, restart: int | None = None) -> None:
        self.exits = {}
        if restart is not None:
            self.restart = (restart, self.last_step)

    def line(self, text: str) -> None:
        m = MARKER_RE.search(text)
        if m:
            self.exits[int(m.group(1))] = m.group(2)
            log.info("worker %s exited: %s", m.group(1), m.group(2))
            return
        print(text, file=self.out, flush=True)
        if (m := self.STEP.search(text)) and m.group(1) in self.offsets:
            self.last_step = self.offsets[m.group(1)] + int(m.group(2))
            if self.restart:  # a restarted run that logs steps without resuming began anew
                self._resumed(None)
        elif (m := self.RESUMED.search(text)) and self.restart:
            self._resumed(int(m.group(1)))
        elif (m := self.CONFIG.search(text)) and m.group(1) != self.config_hash:
            log.warning("worker 0 built config %s, this machine %s: its environment differs "
                        "(CAMBRIAN_CHECKPOINTS / CAMBRIAN_DATA? pass them with --env)",
                        m.group(1), self.config_hash)

    def _resumed(self, step: int | None) -> None:
        n, before = self.restart
        self.restart = None
        lost = (before or 0) - (step or 0)
        log.info("restart %d resumed from %s; last step logged before it: %s; steps lost: %s",
                 n, f"step {step}" if step is not None else "the start", before,
                 max(lost, 0) if before is not None else "unknown")


def stage_offsets(config) -> dict[str, int]:
    """Stage -> global step before it (the trainer counts steps over stages with steps)."""
    out, total = {}, 0
    for name, st in config.stages.items():
        if st.steps > 0:
            out[name] = total
            total += st.steps
    return out


# -------------------------------------------------------------------------------- the launch


@dataclasses.dataclass
class Launch:
    cluster: object  # gcloud.TpuPod or hosts.SshHosts
    shell: Shell
    bundle: bundle.Bundle
    run_args: list[str]  # launch/tpu.py's arguments on the workers
    workdir: str
    env: dict[str, str]
    install: bool
    extra: str  # the pyproject extra installed: tpu | gpu
    watch: Watch

    @property
    def code(self) -> str:
        return f"{REMOTE}/code-{self.bundle.code_hash}"

    @property
    def python(self) -> str:
        return f"{REMOTE}/venv-{self.bundle.install_hash}/bin/python" if self.install \
            else "python3"

    @property
    def run_dir(self) -> str:
        return f"{REMOTE}/runs/" + hashlib.sha256(self.workdir.encode()).hexdigest()[:12]

    def on_all(self, node, command, on_line=None) -> list[int]:
        argvs = self.cluster.on_all(command, node)
        return self.shell.fan_out(argvs, on_line or (lambda ln: print(ln, flush=True)))

    def sync(self, node) -> None:
        h = self.bundle.code_hash
        tar = f"cambrian-{h}.tar.gz"
        rcs = self.shell.fan_out(self.cluster.copy_to_all(self.bundle.path, tar), print)
        if any(rcs):
            raise PodError(f"copying the code to the workers failed (exit {rcs})")
        d = self.code
        cmd = (f"set -e; mkdir -p {REMOTE}; if [ ! -d {d} ]; then rm -rf {d}.tmp; "
               f"mkdir -p {d}.tmp; tar -xzf ~/{tar} -C {d}.tmp; mv {d}.tmp {d}; fi; "
               f"rm -f ~/{tar}; ln -sfn code-{h} {REMOTE}/code")
        if any(self.on_all(node, lambda _: cmd)):
            raise PodError("unpacking the code on the workers failed (output above)")

    def install_deps(self, node) -> None:
        if not self.install:
            return
        venv = f"{REMOTE}/venv-{self.bundle.install_hash}"
        cmd = f"cd {self.code} && bash cambrian/pod/install.sh {venv} {self.extra}"
        if any(self.on_all(node, lambda _: cmd)):
            raise PodError(f"installing .[{self.extra}] on the workers failed (output above)")

    def worker_command(self, verb: str, node, wid: int | None) -> str:
        parts = [self.python, "-m", "cambrian.pod.worker", verb, "--run-dir", self.run_dir]
        if wid is not None:
            parts += ["--worker-id", str(wid)]
        if verb == "run":
            coordinator = self.cluster.coordinator(node)
            if coordinator:
                parts += ["--coordinator", coordinator, "--num-processes", str(node.workers)]
            for k, v in sorted(self.env.items()):
                parts += ["--env", f"{k}={v}"]
            parts += ["--", "launch/tpu.py", *self.run_args]
        # our own paths start with ~ and must stay unquoted for the remote shell to expand
        quoted = [p if p.startswith(REMOTE) else shlex.quote(p) for p in parts]
        return f"cd {self.code} && " + " ".join(quoted)

    def stop_all(self, node) -> None:
        self.on_all(node, lambda wid: self.worker_command("stop", node, wid))

    def start(self, node, verb: str = "run") -> Outcome:
        self.on_all(node, lambda wid: self.worker_command(verb, node, wid), self.watch.line)
        if self.shell.dry_run:
            return Outcome("ok", 0, "dry run")
        return classify(self.watch.exits, node.workers, self.cluster.healthy)


def _config_and_checks(args, overrides: list[str]):
    """Builds, validates and prints the config; runs the memory check. Returns the config."""
    from cambrian import config as config_lib
    from cambrian.pod import memory

    config = config_lib.load(args.config, overrides)
    with config.unlocked():
        config.workdir = args.workdir
    config_lib.adopt_model(config)
    print(config_lib.to_json(config))
    log.info("config %s (%s) -> %s", config.name, config_lib.config_hash(config), args.workdir)
    _preflight(config)
    if args.no_memory_check:
        log.warning("memory check skipped (--no-memory-check)")
        return config
    if not args.accelerator:
        raise PodError("--accelerator (e.g. v4-128) is needed for the memory check of the "
                       "train step; pass it, or --no-memory-check")
    log.info("memory check on %s (compiles on CPU; cached per config)...", args.accelerator)
    results = memory.check(args.config, overrides, config, args.accelerator)
    for r in results:
        log.info("%s", memory.describe(r))
    bad = [r for r in results if not r["fits"]]
    if bad:
        raise PodError("\n".join(f"{memory.describe(r)}: does NOT fit; {memory.advice(r)}"
                                 for r in bad))
    return config


def _preflight(config) -> None:
    """Missing inputs stop the launch here when they live where this machine can look
    (gs://...); paths local to the workers are checked there, before training starts."""
    from cambrian import preflight

    problems = preflight.problems(config)
    # the path is named before the first ";" (the rest may hold a download URL)
    remote = [p for p in problems if "://" in p.split(";")[0]]
    for p in problems:
        if p not in remote:
            log.info("not on this machine (the workers check again): %s", p.split(";")[0])
    if remote:
        raise preflight.PreflightError("\n".join(remote))


def _workdir(args, s: settings.Settings, config_spec: str) -> str:
    w = args.workdir
    if not w:
        if not s.bucket:
            raise PodError("--workdir is required (or set bucket in "
                           f"{settings.DEFAULT_PATH} / $CAMBRIAN_BUCKET for a default)")
        name = re.sub(r"[^A-Za-z0-9_.-]+", "-", config_spec.removesuffix(".py"))
        return f"{s.bucket.rstrip('/')}/runs/{name.strip('-')}"
    if "://" in w or os.path.isabs(w):
        return w
    if not s.bucket:
        raise PodError(f"--workdir {w!r} is relative: every worker must write the same "
                       "place; use gs://BUCKET/..., or set bucket in "
                       f"{settings.DEFAULT_PATH} / $CAMBRIAN_BUCKET to put it there")
    return f"{s.bucket.rstrip('/')}/{w}"


def _validate(args) -> settings.Settings:
    """Settings and flag combinations; exports the settings' [env] before the config exists."""
    s = settings.load()
    if "cambrian.config" in sys.modules:  # it reads $CAMBRIAN_CHECKPOINTS / DATA on import
        cfg = sys.modules["cambrian.config"]
        for var in settings.FORWARDED_ENV:
            if var in s.env and getattr(cfg, var.removeprefix("CAMBRIAN_")) != s.env[var]:
                raise PodError(f"${var} must be set before cambrian.config is imported")
    os.environ.update(s.env)  # the config is built here as the workers will build it
    args.workdir = _workdir(args, s, args.config)
    if args.tpu and args.hosts:
        raise PodError("--tpu and --hosts exclude each other")
    if args.tpu and not (args.zone or s.zone):
        raise PodError(f"--zone is required with --tpu (or zone in {settings.DEFAULT_PATH} / "
                       "$CAMBRIAN_ZONE)")
    if args.create and not (args.accelerator and (args.version or s.runtime_version)):
        raise PodError("--create needs --accelerator (e.g. v4-128) and --version (the TPU "
                       "runtime, e.g. tpu-ubuntu2204-base; or runtime_version in "
                       f"{settings.DEFAULT_PATH})")
    if (args.attach or args.stop) and (args.create or args.delete_after):
        raise PodError("--attach / --stop act on a running slice: drop --create / "
                       "--delete-after")
    if args.hosts and (args.create or args.delete_after or args.spot):
        raise PodError("--create / --delete-after / --spot are for --tpu; --hosts uses the "
                       "hosts as they are")
    bad = [e for e in args.env if "=" not in e]
    if bad:
        raise PodError(f"--env {bad[0]!r}: expected KEY=VALUE")
    if args.hosts and not args.accelerator and not args.no_memory_check:
        log.info("memory check skipped: it knows TPU slices (--accelerator); check a GPU "
                 "host with launch/tpu.py --dry-run on it")
        args.no_memory_check = True
    args.no_memory_check = args.no_memory_check or args.attach or args.stop
    return s


def main(args: argparse.Namespace, overrides: list[str]) -> int:
    """The launch; returns worker 0's exit status (2 for a config / preflight error)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s",
                        datefmt="%H:%M:%S")
    try:
        s = _validate(args)
    except (settings.SettingsError, PodError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from cambrian import config as config_lib
    from cambrian import preflight
    from cambrian.pod import gcloud, hosts

    try:
        config = _config_and_checks(args, overrides)
        shell = Shell(dry_run=args.dry_run)
        if args.tpu:
            cluster = gcloud.TpuPod(args.tpu, args.zone or s.zone, args.project or s.project,
                                    shell, args.accelerator, args.version or s.runtime_version,
                                    args.spot, s.poll_seconds)
        else:
            cluster = hosts.SshHosts(hosts.read(args.hosts), shell)
    except (config_lib.ConfigError, preflight.PreflightError, PodError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    run_args = ["--config", args.config, *overrides, "--workdir", args.workdir]
    run_args += ["--skip-eval"] if args.skip_eval else []
    env = {**s.env, **dict(e.split("=", 1) for e in args.env)}
    launch = Launch(cluster, shell, bundle.make(os.path.join(tempfile.gettempdir(),
                                                             "cambrian-bundles")),
                    run_args, args.workdir, env, not args.no_install,
                    "tpu" if args.tpu else "gpu",
                    Watch(stage_offsets(config), config_lib.config_hash(config)))
    try:
        return _run(args, launch)
    except PodError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        kept = (f"; the slice is NOT deleted: gcloud compute tpus queued-resources delete "
                f"{args.tpu} --zone={cluster.zone} --force" if args.delete_after else "")
        print("\ninterrupted: the run goes on on the workers; follow it again with the same "
              "command plus --attach, stop it with --stop" + kept, file=sys.stderr)
        return 130


def _run(args, launch: Launch) -> int:
    cluster, created = launch.cluster, bool(args.create)
    log.info("code: %s (%s)", launch.bundle.source, launch.bundle.code_hash)
    if args.create:
        cluster.create()
    node = cluster.node()
    if node.state != "READY" and not args.dry_run:
        raise PodError(f"{cluster.name} is {node.state}: create it with --create --accelerator "
                       "... --version ..., or wait until it is READY")
    if args.stop or args.attach:
        if args.stop:
            launch.stop_all(node)
            return 0
        return _finish(args, launch, launch.start(node, "attach"))
    restarts, fresh, interrupted = 0, True, False
    try:
        while True:
            outcome = _attempt(launch, node, fresh, can_retry=restarts < args.retries)
            if outcome.kind in ("ok", "failed", "busy"):
                return _finish(args, launch, outcome)
            if restarts >= args.retries:
                log.error("run stopped (%s); no restarts left (--retries %d)", outcome.detail,
                          args.retries)
                return outcome.rc
            restarts += 1
            log.warning("restart %d/%d after %s (last step logged: %s)", restarts, args.retries,
                        outcome.detail, launch.watch.last_step)
            before = cluster.node()
            if not cluster.recover(created):
                return outcome.rc
            node = cluster.node()
            fresh = before.state != "READY"  # recreated: new VMs need the code again
            if not fresh:  # the same VMs: leftovers of the run must go first
                launch.stop_all(node)
            launch.watch.new_attempt(restart=restarts)
    except KeyboardInterrupt:
        interrupted = True  # the run goes on: the slice is kept
        raise
    finally:
        if args.delete_after and not interrupted:
            log.info("--delete-after: deleting %s", cluster.name)
            cluster.delete()


def _attempt(launch: Launch, node, fresh: bool, can_retry: bool) -> Outcome:
    """One start of the run (code and install first on ``fresh`` VMs); a dropped connection
    is reattached to, ATTACH_TRIES times."""
    cluster = launch.cluster
    if fresh:
        try:
            launch.sync(node)
            launch.install_deps(node)
        except PodError as e:
            if not can_retry or cluster.healthy():
                raise
            return Outcome("preempted", 143, f"slice lost while setting up ({e})")
    outcome = launch.start(node)
    tries = 0
    while outcome.kind == "detached" and tries < ATTACH_TRIES:
        tries += 1
        log.warning("lost the connection to the run (%s): reattaching (%d/%d)",
                    outcome.detail, tries, ATTACH_TRIES)
        time.sleep(cluster.poll_seconds)
        launch.watch.new_attempt()
        outcome = launch.start(node, "attach")
    return outcome


def _finish(args, launch: Launch, outcome: Outcome) -> int:
    if outcome.kind == "busy":
        raise PodError(f"a run is already going in {launch.workdir} on the workers: follow it "
                       "with the same command plus --attach, or stop it with --stop")
    (log.info if outcome.kind == "ok" else log.error)("run %s: %s", outcome.kind, outcome.detail)
    return outcome.rc
