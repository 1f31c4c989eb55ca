"""Runs a config on every worker of a TPU pod (or a list of GPU hosts) from one command.

``python launch/tpu.py --config X --workdir gs://B/runs/x --tpu NAME [--create ...]`` goes:

1. ``memory``: the config is built and validated here and the train step of every stage is
   compiled for the slice on fake CPU devices; a step that will not fit stops before any gcloud
   call, naming the knob to change;
2. ``gcloud`` (TPU) / ``hosts`` (ssh): the slice is created as a queued resource and waited for
   (``--create``), or found;
3. ``bundle``: the code (git HEAD plus uncommitted changes) is copied to every worker and the
   ``[tpu]`` extra installed once per VM (keyed by the pyproject hash);
4. ``worker`` (runs on each worker): the run starts detached from the ssh connection, its log
   streams back with a worker prefix (worker 0 in full, the others' errors), and every worker
   reports its exit status;
5. ``launch``: the loop -- a preempted slice (exit 143, a lost worker, state PREEMPTED) is
   recreated or restarted and the run resumes from its last checkpoint, up to ``--retries``.
"""
