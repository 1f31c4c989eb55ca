"""What runs on each worker: start a run detached from the ssh connection, stream its log, stop it.

    python -m cambrian.pod.worker run --run-dir ~/cambrian/runs/ID [--coordinator H:P
        --num-processes N] [--env K=V ...] -- launch/tpu.py --config ... --workdir ...
    python -m cambrian.pod.worker attach|stop --run-dir ~/cambrian/runs/ID

``run`` starts ``python ARGS...`` under a supervisor in its own process group (a dropped ssh
connection does not stop it), its output going to ``RUN_DIR/log``; then it follows that log:
worker 0 prints every line, the other workers only lines that look like errors (and everything
after a traceback), each prefixed ``[wI]``. When the run ends it prints the marker line
``@@cambrian-worker I exit RC`` and exits with RC; RC is ``lost`` when the supervisor vanished
without a status, ``busy`` when another run was live in the run dir (nothing is started).
``attach`` follows the run from its last lines (after a dropped connection); ``stop`` sends
SIGTERM to the run (the trainer checkpoints and exits 143), then SIGKILL after ``--grace``
seconds.

Several processes: with ``--num-processes`` > 1 the run gets ``CAMBRIAN_COORDINATOR``,
``CAMBRIAN_NUM_PROCESSES`` and ``CAMBRIAN_PROCESS_ID`` (= the worker id), which
``launch/tpu.py`` reads. The worker id is ``--worker-id``, else ``$TPU_WORKER_ID``, else the
TPU VM's metadata ``agent-worker-number``, else a ``-w-N`` hostname suffix, else 0.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

MARKER = "@@cambrian-worker"
MARKER_RE = re.compile(rf"{MARKER} (\d+) exit (-?\d+|lost|busy|none)")
ERROR_RE = re.compile(r"Traceback|Error|ERROR|CRITICAL|FATAL|Exception|^F\d{4} |Killed|"
                      r"Segmentation fault|core dumped|preempted")
POLL_SECONDS = 0.2
PROGRESS_SECONDS = 30.0  # worker 0 shows a progress-bar refresh at most this often
TAIL_LINES = 20
_METADATA = ("http://metadata.google.internal/computeMetadata/v1/instance/attributes/"
             "agent-worker-number")


def worker_id(explicit: int = -1) -> int:
    if explicit >= 0:
        return explicit
    if os.environ.get("TPU_WORKER_ID", "").isdigit():
        return int(os.environ["TPU_WORKER_ID"])
    try:
        req = urllib.request.Request(_METADATA, headers={"Metadata-Flavor": "Google"})
        with urllib.request.urlopen(req, timeout=2) as r:
            return int(r.read().decode())
    except (OSError, ValueError):
        pass
    m = re.search(r"-w-(\d+)$", socket.gethostname())
    return int(m.group(1)) if m else 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (our own finished child) counts as gone
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def _read(path: str) -> str | None:
    try:
        with open(path) as fh:
            return fh.read().strip()
    except FileNotFoundError:
        return None


def _write(path: str, text: str) -> None:
    with open(path + ".tmp", "w") as fh:
        fh.write(text)
    os.replace(path + ".tmp", path)


class RunDir:
    """``log`` (the run's output), ``pid`` (its process group), ``cmd``, ``exit`` (its status)."""

    def __init__(self, path: str):
        self.path = os.path.expanduser(path)
        os.makedirs(self.path, exist_ok=True)

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def pid(self) -> int | None:
        p = _read(self.file("pid"))
        return int(p) if p else None

    def exit_code(self) -> str | None:
        return _read(self.file("exit"))

    def live(self) -> bool:
        pid = self.pid()
        return pid is not None and self.exit_code() is None and _alive(pid)


# ------------------------------------------------------------------------------ log following


class Printer:
    """Prefixes and filters log lines: worker 0 shows all, the others errors only."""

    def __init__(self, wid: int, out=None):
        self.wid, self.out = wid, out or sys.stdout
        self.in_traceback, self.shown = False, 0
        self.last_progress = 0.0
        self.recent: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)

    def emit(self, text: str) -> None:
        try:
            self.out.write(f"[w{self.wid}] {text}\n")
            self.out.flush()
        except BrokenPipeError:  # the ssh connection went away; the run itself goes on
            sys.exit(0)

    def line(self, text: str, progress: bool = False) -> None:
        if progress:  # a tqdm refresh ended by \r
            if self.wid == 0 and time.time() - self.last_progress >= PROGRESS_SECONDS:
                self.last_progress = time.time()
                self.emit(text.strip())
            return
        self.recent.append(text)
        if self.wid != 0:
            self.in_traceback = self.in_traceback or text.startswith("Traceback")
            if not (self.in_traceback or ERROR_RE.search(text)):
                return
        self.shown += 1
        self.emit(text)

    def finish(self, rc: str) -> None:
        """A failed worker whose errors were not recognised shows its last lines."""
        if self.wid != 0 and rc not in ("0", "143") and not self.shown:
            for text in self.recent:
                self.emit(text)
        try:
            self.out.write(f"{MARKER} {self.wid} exit {rc}\n")
            self.out.flush()
        except BrokenPipeError:
            pass


def _tail_offset(path: str, lines: int) -> int:
    """Byte offset of the start of the last ``lines`` lines of ``path``."""
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        fh.seek(max(0, size - 64 * 1024))
        data = fh.read()
    cut = [i for i, b in enumerate(data) if b == 0x0A][:-1]
    if len(cut) < lines:
        return size - len(data) if size > len(data) else 0
    return size - len(data) + cut[-lines] + 1


def follow(rd: RunDir, printer: Printer, from_tail: bool = False) -> str:
    """Prints the run's log as it grows until the run ends; returns its exit code (or "lost")."""
    log = rd.file("log")
    while not os.path.exists(log):
        time.sleep(POLL_SECONDS)
    with open(log, "rb") as fh:
        if from_tail:
            fh.seek(_tail_offset(log, TAIL_LINES))
        buf = b""
        while True:
            chunk = fh.read(1 << 16)
            if chunk:
                buf += chunk
                parts = re.split(rb"(\r\n|\n|\r)", buf)
                buf = parts.pop()
                for text, end in zip(parts[::2], parts[1::2]):
                    printer.line(text.decode("utf-8", "replace"), progress=end == b"\r")
                continue
            rc = rd.exit_code()
            if rc is None and rd.live():
                time.sleep(POLL_SECONDS)
                continue
            rest = fh.read()  # written between the last read and the exit
            if rest:
                buf += rest
                continue
            if buf:
                printer.line(buf.decode("utf-8", "replace"))
            return rd.exit_code() or "lost"


# ------------------------------------------------------------------------------------ commands


def child_env(env_pairs: list[str], coordinator: str, num_processes: int, wid: int) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.getcwd(), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    for pair in env_pairs:
        key, eq, value = pair.partition("=")
        if not eq:
            raise SystemExit(f"--env {pair!r}: expected KEY=VALUE")
        env[key] = value
    if num_processes > 1:
        env.update(CAMBRIAN_COORDINATOR=coordinator, CAMBRIAN_NUM_PROCESSES=str(num_processes),
                   CAMBRIAN_PROCESS_ID=str(wid))
    return env


def run(args: argparse.Namespace) -> int:
    """Starts the run (unless one is live in the run dir: ``busy``) and follows its log."""
    wid = worker_id(args.worker_id)
    rd = RunDir(args.run_dir)
    printer = Printer(wid)
    if rd.live():
        printer.emit(f"a run is live in {rd.path} (pid {rd.pid()}): {_read(rd.file('cmd'))}")
        printer.finish("busy")
        return 3
    cmd = [sys.executable, *args.command]
    env = child_env(args.env, args.coordinator, args.num_processes, wid)
    for name in ("exit", "pid"):
        if os.path.exists(rd.file(name)):
            os.remove(rd.file(name))
    if os.path.exists(rd.file("log")):
        os.replace(rd.file("log"), rd.file("log.prev"))
    _write(rd.file("cmd"), json.dumps({"cmd": cmd, "env": args.env, "cwd": os.getcwd()}))
    with open(rd.file("log"), "ab") as log:
        sup = subprocess.Popen(
            [sys.executable, "-m", "cambrian.pod.worker", "supervise", "--run-dir", rd.path,
             "--", *cmd], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env=env, start_new_session=True)
    _write(rd.file("pid"), str(sup.pid))
    return _done(printer, follow(rd, printer))


def attach(args: argparse.Namespace) -> int:
    """Follows the run in the run dir from its last lines (to its end, if it already ended)."""
    rd = RunDir(args.run_dir)
    printer = Printer(worker_id(args.worker_id))
    if rd.pid() is None:
        printer.emit(f"no run in {rd.path}")
        printer.finish("none")
        return 3
    return _done(printer, follow(rd, printer, from_tail=True))


def _done(printer: Printer, rc: str) -> int:
    printer.finish(rc)
    return int(rc) if rc.lstrip("-").isdigit() else 1


def supervise(args: argparse.Namespace) -> int:
    """Runs the command, forwards SIGTERM to it, writes its exit status to RUN_DIR/exit."""
    rd = RunDir(args.run_dir)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    child = subprocess.Popen(args.command)
    signal.signal(signal.SIGTERM, lambda *_: child.send_signal(signal.SIGTERM))
    rc = child.wait()
    rc = 128 - rc if rc < 0 else rc  # killed by signal N -> 128 + N, as a shell reports it
    _write(rd.file("exit"), str(rc))
    return rc


def stop(args: argparse.Namespace) -> int:
    wid = worker_id(args.worker_id)
    rd = RunDir(args.run_dir)
    pid = rd.pid()
    if pid is None or not rd.live():
        print(f"[w{wid}] no live run in {rd.path}", flush=True)
        return 0
    os.killpg(pid, signal.SIGTERM)
    deadline = time.time() + args.grace
    while rd.live() and time.time() < deadline:
        time.sleep(POLL_SECONDS)
    if rd.live():
        os.killpg(pid, signal.SIGKILL)
        print(f"[w{wid}] run {pid} killed after {args.grace:.0f}s", flush=True)
    else:
        print(f"[w{wid}] run {pid} stopped (exit {rd.exit_code()})", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="verb", required=True)
    for verb in ("run", "attach", "stop", "supervise"):
        s = sub.add_parser(verb)
        s.add_argument("--run-dir", required=True)
        s.add_argument("--worker-id", type=int, default=-1)
        if verb == "stop":
            s.add_argument("--grace", type=float, default=120.0)
        if verb in ("stop", "attach"):
            continue
        if verb == "run":
            s.add_argument("--coordinator", default="")
            s.add_argument("--num-processes", type=int, default=1)
            s.add_argument("--env", action="append", default=[])
        s.add_argument("command", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    if "command" in args:
        args.command = args.command[1:] if args.command[:1] == ["--"] else args.command
    return {"run": run, "attach": attach, "stop": stop, "supervise": supervise}[args.verb](args)


if __name__ == "__main__":
    sys.exit(main())
