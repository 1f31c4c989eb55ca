"""Running the launcher's commands: every one is printed; ``--dry-run`` only prints them."""

from __future__ import annotations

import queue
import shlex
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence


class PodError(RuntimeError):
    """A step of the launch failed; the message says which command and what to do."""


class Shell:
    def __init__(self, dry_run: bool = False, out=None):
        self.dry_run = dry_run
        self.out = out or sys.stderr
        self.commands: list[list[str]] = []  # every command, in order

    def show(self, argv: Sequence[str]) -> None:
        self.commands.append(list(argv))
        print(("would run: " if self.dry_run else "$ ") + shlex.join(argv), file=self.out,
              flush=True)

    def run(self, argv: Sequence[str], *, check: bool = True, quiet: bool = False
            ) -> subprocess.CompletedProcess:
        """Runs ``argv`` to completion, capturing its output (dry run: returns rc 0, no output).

        ``quiet`` commands (state polls) are not printed, except in a dry run."""
        if self.dry_run or not quiet:
            self.show(argv)
        if self.dry_run:
            return subprocess.CompletedProcess(list(argv), 0, "", "")
        try:
            r = subprocess.run(list(argv), capture_output=True, text=True)
        except FileNotFoundError as e:
            raise PodError(f"{argv[0]} not found on PATH: install it (gcloud: "
                           "https://cloud.google.com/sdk/docs/install) or fix PATH") from e
        if check and r.returncode:
            raise PodError(f"`{shlex.join(argv)}` failed with exit status {r.returncode}:\n"
                           f"{(r.stderr or r.stdout).strip()[-2000:]}")
        return r

    def fan_out(self, argvs: Sequence[Sequence[str]], on_line: Callable[[str], None]
                ) -> list[int]:
        """Runs ``argvs`` concurrently, passing every output line (stdout and stderr, merged)
        to ``on_line`` as it arrives; returns their exit statuses."""
        for argv in argvs:
            self.show(argv)
        if self.dry_run:
            return [0] * len(argvs)
        lines: queue.Queue = queue.Queue()
        procs = [subprocess.Popen(list(a), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, text=True, errors="replace")
                 for a in argvs]

        def pump(p: subprocess.Popen) -> None:
            for line in p.stdout:
                lines.put(line.rstrip("\n"))
            lines.put(None)

        for p in procs:
            threading.Thread(target=pump, args=(p,), daemon=True).start()
        open_streams = len(procs)
        while open_streams:
            line = lines.get()
            if line is None:
                open_streams -= 1
            else:
                on_line(line)
        return [p.wait() for p in procs]
