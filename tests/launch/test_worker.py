"""``cambrian/pod/worker.py`` on this machine: a detached run, its log, its exit status."""

import io
import os
import subprocess
import sys
import time

from cambrian.pod import worker

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _worker(*args: str, timeout: int = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cambrian.pod.worker", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": ROOT})


def test_run_streams_with_prefix_and_reports_the_exit_status(tmp_path):
    code = ("import os; print('hello', os.environ['K']); print('step', end='\\r'); "
            "raise SystemExit(7)")
    r = _worker("run", "--run-dir", str(tmp_path), "--worker-id", "0", "--env", "K=v", "--",
                "-c", code)
    assert r.returncode == 7
    lines = r.stdout.splitlines()
    assert lines[0] == "[w0] hello v"
    assert lines[-1] == "@@cambrian-worker 0 exit 7"
    assert (tmp_path / "exit").read_text() == "7"
    # attaching to an ended run replays its last lines and its status
    r = _worker("attach", "--run-dir", str(tmp_path), "--worker-id", "0")
    assert r.stdout.splitlines()[0] == "[w0] hello v"
    assert r.stdout.splitlines()[-1] == "@@cambrian-worker 0 exit 7"


def test_other_workers_show_errors_only_and_the_tail_of_an_unexplained_failure():
    out = io.StringIO()
    p = worker.Printer(3, out)
    for line in ("INFO loading", "WARNING slow disk", "ERROR bad record", "INFO more",
                 "Traceback (most recent call last):", '  File "x.py", line 1', "KeyError: 'a'"):
        p.line(line)
    p.finish("1")
    assert out.getvalue().splitlines() == [
        "[w3] ERROR bad record", "[w3] Traceback (most recent call last):",
        '[w3]   File "x.py", line 1', "[w3] KeyError: 'a'", "@@cambrian-worker 3 exit 1"]
    out = io.StringIO()
    p = worker.Printer(2, out)
    p.line("INFO only info")
    p.finish("-9")  # killed, no error printed: the last lines tell what it was doing
    assert out.getvalue().splitlines() == ["[w2] INFO only info", "@@cambrian-worker 2 exit -9"]


def test_a_live_run_is_not_started_twice_and_stop_sends_sigterm(tmp_path):
    code = ("import signal, sys, time\n"
            "signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))\n"
            "print('up', flush=True)\n"
            "time.sleep(60)\n")
    first = subprocess.Popen([sys.executable, "-m", "cambrian.pod.worker", "run", "--run-dir",
                              str(tmp_path), "--worker-id", "0", "--", "-c", code], cwd=ROOT,
                             stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": ROOT})
    assert first.stdout.readline() == "[w0] up\n"
    busy = _worker("run", "--run-dir", str(tmp_path), "--worker-id", "0", "--", "-c", "0")
    assert busy.returncode == 3 and "@@cambrian-worker 0 exit busy" in busy.stdout
    t0 = time.time()
    stop = _worker("stop", "--run-dir", str(tmp_path), "--worker-id", "0", "--grace", "20")
    assert "stopped (exit 143)" in stop.stdout and time.time() - t0 < 15
    assert first.wait(timeout=30) == 143
    assert first.stdout.read().strip() == "@@cambrian-worker 0 exit 143"
