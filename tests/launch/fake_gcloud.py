"""A stand-in for ``gcloud compute tpus ...``: records every call and simulates a TPU slice whose
workers are local folders (their $HOME) running the commands in local shells.

State lives in ``$FAKE_GCLOUD_DIR/state.json`` (``calls.jsonl`` lists every call):

* ``qr``: queued resource name -> state; each ``describe`` moves WAITING_FOR_RESOURCES ->
  PROVISIONING -> ACTIVE;
* ``nodes``: name -> {state, accelerator, workers}; ``create`` / ``delete`` wipe the workers'
  homes (new VMs);
* ``preempt``: {"at": TEXT, "done": bool}: the first output line of a worker command containing
  TEXT triggers a preemption: SIGTERM to every worker's run (its process group, from the run
  dir's pid file), node PREEMPTED, queued resource SUSPENDED.

Worker I runs ``bash -c COMMAND`` with HOME = ``workers/I``, ``TPU_WORKER_ID=I``, this file's
``fake_bin`` first on PATH (a fake ``uv``) and the chips of one host as CPU devices. With
``$FAKE_TRAINER`` set, ``launch/tpu.py`` in the command is replaced by that script.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
DIR = os.environ["FAKE_GCLOUD_DIR"]
STATE = os.path.join(DIR, "state.json")
NEXT = {"WAITING_FOR_RESOURCES": "PROVISIONING", "PROVISIONING": "ACTIVE"}
LOCK = threading.Lock()


def load() -> dict:
    if not os.path.exists(STATE):
        return {"qr": {}, "nodes": {}, "preempt": None}
    with open(STATE) as fh:
        return json.load(fh)


def save(state: dict) -> None:
    with open(STATE + ".tmp", "w") as fh:
        json.dump(state, fh)
    os.replace(STATE + ".tmp", STATE)


def flag(args: list[str], name: str) -> str | None:
    for a in args:
        if a.startswith(f"--{name}="):
            return a.split("=", 1)[1]
    return None


def hosts(accelerator: str) -> int:
    chips = int(accelerator.split("-")[1]) // 2  # v4 / v5p: two TensorCores per chip
    return max(1, chips // 4)


def home(i: int) -> str:
    return os.path.join(DIR, "workers", str(i))


def fresh_vms(n: int) -> None:
    shutil.rmtree(os.path.join(DIR, "workers"), ignore_errors=True)
    for i in range(n):
        os.makedirs(home(i))


def preempt(state: dict, name: str) -> None:
    for i in range(state["nodes"][name]["workers"]):
        runs = os.path.join(home(i), "cambrian", "runs")
        for run in os.listdir(runs) if os.path.isdir(runs) else []:
            pid_file = os.path.join(runs, run, "pid")
            if os.path.exists(pid_file) and not os.path.exists(os.path.join(runs, run, "exit")):
                with open(pid_file) as fh:
                    os.killpg(int(fh.read()), signal.SIGTERM)
    state["nodes"][name]["state"] = "PREEMPTED"
    if name in state["qr"]:
        state["qr"][name] = "SUSPENDED"
    state["preempt"]["done"] = True


def ssh(state: dict, name: str, command: str) -> int:
    node = state["nodes"][name]
    if os.environ.get("FAKE_TRAINER"):
        command = command.replace("launch/tpu.py", os.environ["FAKE_TRAINER"])
    chips = int(node["accelerator"].split("-")[1]) // 2
    procs = []
    for i in range(node["workers"]):
        env = {**os.environ, "HOME": home(i), "TPU_WORKER_ID": str(i),
               "PATH": os.path.join(HERE, "fake_bin") + os.pathsep + os.environ["PATH"],
               "JAX_PLATFORMS": "cpu", "PYTHONPATH": "",
               "XLA_FLAGS": f"--xla_force_host_platform_device_count={min(chips, 4)}"}
        procs.append(subprocess.Popen(["bash", "-c", command], env=env, cwd=home(i), text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT))

    def pump(p):
        for line in p.stdout:
            with LOCK:
                sys.stdout.write(line)
                sys.stdout.flush()
                p_ = state["preempt"]
                if p_ and not p_["done"] and p_["at"] in line:
                    preempt(state, name)
                    save(state)

    threads = [threading.Thread(target=pump, args=(p,)) for p in procs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return max(p.wait() for p in procs)


def main(args: list[str]) -> int:
    with open(os.path.join(DIR, "calls.jsonl"), "a") as fh:
        fh.write(json.dumps(args) + "\n")
    state = load()
    assert args[:2] == ["compute", "tpus"], args
    group, verb, name = args[2], args[3], args[4]
    if group == "queued-resources":
        if verb == "describe":
            if name not in state["qr"]:
                print(f"ERROR: NOT_FOUND: {name}", file=sys.stderr)
                return 1
            print(state["qr"][name])
            state["qr"][name] = NEXT.get(state["qr"][name], state["qr"][name])
        elif verb == "create":
            acc = flag(args, "accelerator-type")
            state["qr"][name] = "WAITING_FOR_RESOURCES"
            state["nodes"][flag(args, "node-id")] = {"state": "READY", "accelerator": acc,
                                                     "workers": hosts(acc)}
            fresh_vms(hosts(acc))
        elif verb == "delete":
            state["qr"].pop(name, None)
            state["nodes"].pop(name, None)
            shutil.rmtree(os.path.join(DIR, "workers"), ignore_errors=True)
        save(state)
        return 0
    if verb == "scp":
        src, (name, dest) = args[4], args[5].split(":", 1)
    node = state["nodes"].get(name)
    if verb == "describe":
        waiting = state["qr"].get(name, "ACTIVE") not in ("ACTIVE", "SUSPENDED")
        if node is None or waiting:  # a queued node exists once its request is ACTIVE
            print(f"ERROR: NOT_FOUND: {name}", file=sys.stderr)
            return 1
        print(json.dumps({"state": node["state"], "acceleratorType": node["accelerator"],
                          "networkEndpoints": [{"ipAddress": "127.0.0.1"}] * node["workers"]}))
        return 0
    assert node is not None and "--worker=all" in args, args
    if verb == "scp":
        for i in range(node["workers"]):
            shutil.copy(src, os.path.join(home(i), dest))
        return 0
    if verb == "ssh":
        return ssh(state, name, flag(args, "command"))
    raise SystemExit(f"fake gcloud: unknown command {args}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
