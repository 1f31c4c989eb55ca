"""Stands in for launch/tpu.py on fake TPU workers: prints what the trainer prints, and with
$FAKE_FAIL_WORKER=I fails on worker I with a traceback while the others report a lost peer."""

import os
import sys

wid = int(os.environ["TPU_WORKER_ID"])
print(f"{wid}: process {os.environ.get('CAMBRIAN_PROCESS_ID', '-')} of "
      f"{os.environ.get('CAMBRIAN_NUM_PROCESSES', '-')} via "
      f"{os.environ.get('CAMBRIAN_COORDINATOR', '-')}; args {' '.join(sys.argv[1:])}")
print(f"INFO worker {wid} detail line")
for step in (1, 2, 3):
    print(f"00:00:0{step} INFO stage2 step {step} loss 1.{step}")
fail = os.environ.get("FAKE_FAIL_WORKER")
if fail == str(wid):
    print("Traceback (most recent call last):")
    print('  File "train.py", line 1, in <module>')
    print(f"ValueError: boom on worker {wid}")
    sys.exit(1)
if fail:
    print("INFO shutting down")
    print(f"jax.errors.JaxRuntimeError: task {fail} failed: heartbeat timeout", file=sys.stderr)
    sys.exit(1)
