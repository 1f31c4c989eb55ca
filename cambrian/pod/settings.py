"""Personal launch defaults: project, zone, bucket, ... -- never from the repository.

Read from ``~/.config/cambrian/launch.toml`` (or the file ``$CAMBRIAN_LAUNCH_CONFIG`` names),
then overridden by environment variables, then by command-line flags::

    project = "my-project"            # $CAMBRIAN_PROJECT
    zone = "us-central2-b"            # $CAMBRIAN_ZONE
    bucket = "gs://my-bucket"         # $CAMBRIAN_BUCKET: relative --workdir goes under it
    runtime_version = "tpu-ubuntu2204-base"   # $CAMBRIAN_RUNTIME_VERSION
    poll_seconds = 30                 # $CAMBRIAN_POLL_SECONDS: gcloud state polling
    [env]                             # set here (before the config is built) and on every
                                      # worker; $CAMBRIAN_CHECKPOINTS / $CAMBRIAN_DATA win
    CAMBRIAN_CHECKPOINTS = "gs://my-bucket/checkpoints"
    CAMBRIAN_DATA = "gs://my-bucket/data"
"""

from __future__ import annotations

import dataclasses
import os
import tomllib

DEFAULT_PATH = "~/.config/cambrian/launch.toml"
# Forwarded to the workers when set here: where configs find checkpoints and data.
FORWARDED_ENV = ("CAMBRIAN_CHECKPOINTS", "CAMBRIAN_DATA")


@dataclasses.dataclass
class Settings:
    project: str = ""
    zone: str = ""
    bucket: str = ""
    runtime_version: str = ""
    poll_seconds: float = 30.0
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    source: str = ""  # the file read, if any


_ENV = {"project": "CAMBRIAN_PROJECT", "zone": "CAMBRIAN_ZONE", "bucket": "CAMBRIAN_BUCKET",
        "runtime_version": "CAMBRIAN_RUNTIME_VERSION", "poll_seconds": "CAMBRIAN_POLL_SECONDS"}


class SettingsError(ValueError):
    pass


def load(environ: dict | None = None) -> Settings:
    environ = os.environ if environ is None else environ
    path = os.path.expanduser(environ.get("CAMBRIAN_LAUNCH_CONFIG", DEFAULT_PATH))
    s = Settings()
    if os.path.isfile(path):
        try:
            with open(path, "rb") as fh:
                raw = tomllib.load(fh)
        except tomllib.TOMLDecodeError as e:
            raise SettingsError(f"{path}: {e}") from e
        known = {f.name for f in dataclasses.fields(Settings)} - {"source"}
        unknown = set(raw) - known
        if unknown:
            raise SettingsError(f"{path}: unknown keys {sorted(unknown)}; known: "
                                f"{', '.join(sorted(known))}")
        for key, value in raw.items():
            if key == "env":
                if not isinstance(value, dict):
                    raise SettingsError(f"{path}: [env] must be a table of NAME = \"value\"")
                s.env = {str(k): str(v) for k, v in value.items()}
            else:
                setattr(s, key, type(getattr(s, key))(value))
        s.source = path
    for key, var in _ENV.items():
        if environ.get(var):
            try:
                setattr(s, key, type(getattr(s, key))(environ[var]))
            except ValueError as e:
                raise SettingsError(f"${var}={environ[var]!r}: expected a number") from e
    for var in FORWARDED_ENV:
        if environ.get(var):
            s.env[var] = environ[var]
    return s
