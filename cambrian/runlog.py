"""What a training run records beside its checkpoints: logs per host, ``metrics.jsonl``,
TensorBoard event files and, when asked for, Weights & Biases.

``WORKDIR/metrics.jsonl`` holds one JSON object per logged step (every ``log_every`` steps and
each stage's last), written by process 0::

    {"stage": "stage2", "step": 1234, "stage_step": 1184, "loss": 1.23,
     "lr": {"base": 2e-05, "vision_sampler|vision_query": 2e-06}, "grad_norm": 0.81,
     "step_time_s": 0.51, "tokens_per_s": 64000.0, "examples_per_s": 31.2, "mfu": 0.41,
     "time": 1767225600.0}

``step`` counts the steps of every stage (``stage_step`` those of this one); ``loss`` and
``grad_norm`` are that step's; ``lr`` is each LR group's rate in that step's update
(``optim.lr_groups``). ``step_time_s``, ``tokens_per_s`` (real token slots of the global batch,
visual-token slots included, padding not) and ``examples_per_s`` (conversations) are measured over
the steps since the previous synchronisation with the device (the previous logged step, checkpoint,
or the stage's first step, which holds the compilation). ``mfu`` is XLA's FLOP count of one step
(``train.step_flops``) / step time / (devices x peak FLOP/s), null where the peak is unknown. A
resumed run drops the rows past the step it restored and continues the file, so no step appears
twice; TensorBoard (``WORKDIR/tensorboard/``, same numbers under ``<stage>/<key>``) is told to
purge the replayed steps the same way.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time

from cambrian import fileio
from cambrian.data import readers

log = logging.getLogger("cambrian")

# Dense bf16 peak FLOP/s per device by ``device_kind`` (vendor datasheets), most specific first;
# an mfu on a run in float32 is still against these. Kinds not listed (CPUs among them) get no
# mfu unless ``log.peak_tflops`` names the peak.
PEAK_FLOPS = (
    ("H100 PCIe", 756e12), ("H100 NVL", 835e12), ("H100", 989e12),
    ("H200 NVL", 835e12), ("H200", 989e12), ("A100", 312e12),
    ("TPU v6 lite", 918e12), ("TPU v5 lite", 197e12), ("TPU v5p", 459e12), ("TPU v5", 459e12),
    ("TPU v4 lite", None), ("TPU v4", 275e12),
)

_NOISY = ("absl", "jax", "orbax", "tensorflow", "grain")


class RunError(RuntimeError):
    """A run stopped for a reason the user can fix; the message is the one line to show."""


def setup_logging(process_index: int) -> None:
    """Process 0 logs INFO and up; the other processes WARNING and up, each line naming its
    process (a pod's hosts would otherwise print every message once each)."""
    main = process_index == 0
    where = "" if main else f"[process {process_index}] "
    logging.basicConfig(level=logging.INFO if main else logging.WARNING, force=True,
                        format=f"%(asctime)s %(levelname)s {where}%(message)s",
                        datefmt="%H:%M:%S")
    for name in _NOISY:
        logging.getLogger(name).setLevel(logging.WARNING)


def peak_flops(device_kind: str, peak_tflops: float = 0.0) -> float | None:
    """Peak FLOP/s of one device: ``peak_tflops`` if set, else :data:`PEAK_FLOPS`, else None."""
    if peak_tflops > 0:
        return peak_tflops * 1e12
    kind = device_kind.lower()
    return next((p for name, p in PEAK_FLOPS if name.lower() in kind), None)


def mfu(flops_per_step: float | None, step_time_s: float, devices: int,
        peak: float | None) -> float | None:
    """Model FLOP utilisation: achieved FLOP/s over the mesh's peak."""
    if not flops_per_step or not peak or step_time_s <= 0:
        return None
    return flops_per_step / step_time_s / (devices * peak)


def row(*, stage: str, step: int, stage_step: int, loss: float, lr: dict[str, float],
        grad_norm: float, seconds: float, steps: int, tokens: int, examples: int,
        flops_per_step: float | None, devices: int, peak: float | None) -> dict:
    """One line of metrics.jsonl from an interval of ``steps`` steps taking ``seconds``."""
    step_time = seconds / steps
    return {"stage": stage, "step": step, "stage_step": stage_step, "loss": loss, "lr": lr,
            "grad_norm": grad_norm, "step_time_s": step_time,
            "tokens_per_s": tokens / seconds, "examples_per_s": examples / seconds,
            "mfu": mfu(flops_per_step, step_time, devices, peak), "time": time.time()}


def read_rows(path: str) -> list[dict]:
    """metrics.jsonl's rows; a last line cut short by a killed run is dropped with a warning."""
    if not fileio.exists(path):
        return []
    rows = []
    for rec, where in readers.read_jsonl(path, cut_last_line=True):
        if isinstance(rec, readers.BadRecord):
            raise RunError(f"{where} is not JSON ({rec.detail}); delete that line (or the "
                           "file, losing the record of earlier steps) and rerun")
        rows.append(rec)
    return rows


class Recorder:
    """metrics.jsonl, TensorBoard and W&B of one workdir, continued from ``restored_step``.

    Every process keeps the rows (``losses`` serves them); only ``main`` writes.
    """

    def __init__(self, config, workdir: str, *, restored_step: int, main: bool,
                 devices: int = 1, device_kind: str = "cpu"):
        self.path = fileio.join(workdir, "metrics.jsonl")
        self.main, self.devices = main, devices
        self.peak = peak_flops(device_kind, config.log.peak_tflops)
        self.rows = [r for r in read_rows(self.path) if r["step"] <= restored_step]
        self._rewrite = True  # the first write drops the rows past the restored step
        self._tb = self._wandb = None
        if config.log.tensorboard and main:
            self._tb = _tensorboard(fileio.join(workdir, "tensorboard"), restored_step + 1)
        if config.log.wandb:  # checked on every host, so all stop alike when it is missing
            wandb = _import_wandb(config.log.wandb)
            if main:
                self._wandb = wandb.init(
                    project=config.log.wandb, name=config.name, config=config.to_dict(),
                    id=_wandb_id(workdir), resume="allow")

    def losses(self, stage: str) -> tuple[list[int], list[float]]:
        """(stage steps, losses) of ``stage``'s rows, those before a resume included."""
        rows = [r for r in self.rows if r["stage"] == stage]
        return [r["stage_step"] for r in rows], [r["loss"] for r in rows]

    def log_step(self, stage: str, step: int, stage_step: int, synced: list[dict],
                 seconds: float, lr: dict[str, float], flops: float | None) -> dict:
        """Records logged step ``step`` from the metrics of the ``synced`` steps since the
        previous synchronisation (``seconds`` ago; the last one is ``step``'s own)."""
        r = row(stage=stage, step=step, stage_step=stage_step, loss=synced[-1]["loss"], lr=lr,
                grad_norm=synced[-1]["grad_norm"], seconds=seconds, steps=len(synced),
                tokens=sum(x["tokens"] for x in synced),
                examples=sum(x["examples"] for x in synced), flops_per_step=flops,
                devices=self.devices, peak=self.peak)
        self.write(r)
        log.info("%s step %d loss %.4f grad_norm %.3f, %.3f s/step, %.0f tokens/s", stage,
                 stage_step, r["loss"], r["grad_norm"], r["step_time_s"], r["tokens_per_s"])
        return r

    def write(self, r: dict) -> None:
        self.rows.append(r)
        if not self.main:
            return
        line = json.dumps(r) + "\n"
        if self._rewrite or fileio.is_remote(self.path):  # object stores cannot append
            fileio.write_text(self.path, "".join(json.dumps(x) + "\n" for x in self.rows))
            self._rewrite = False
        else:
            with fileio.open_file(self.path, "a") as fh:
                fh.write(line)
        scalars = {k: r[k] for k in ("loss", "grad_norm", "step_time_s", "tokens_per_s",
                                     "examples_per_s", "mfu") if r[k] is not None}
        scalars.update({f"lr/{k}": v for k, v in r["lr"].items()})
        if self._tb is not None:
            for k, v in scalars.items():
                self._tb.add_scalar(f"{r['stage']}/{k}", v, r["step"], walltime=r["time"])
        if self._wandb is not None:
            self._wandb.log({f"{r['stage']}/{k}": v for k, v in scalars.items()}, step=r["step"])

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None


def _tensorboard(logdir: str, purge_step: int):
    try:
        from tensorboardX import SummaryWriter
    except ImportError as e:
        raise RunError("log.tensorboard=True needs the tensorboardX package: pip install "
                       "tensorboardX, or set --config.log.tensorboard=False") from e
    # purge_step: TensorBoard hides this logdir's older events at steps >= the resumed one
    return SummaryWriter(logdir, purge_step=purge_step)


def _import_wandb(project: str):
    try:
        import wandb
    except ImportError as e:
        raise RunError(f"log.wandb={project!r} asks for Weights & Biases, but the wandb package "
                       "is not installed: pip install wandb (and wandb login), or drop "
                       "--config.log.wandb") from e
    return wandb


def _wandb_id(workdir: str) -> str:
    """One W&B run per workdir, so a resumed run continues its curves."""
    return hashlib.sha256(fileio.absolute(workdir).encode()).hexdigest()[:16]
