"""Configuration from the environment only. No credential has a default value.

Secrets may come as files (OpenFaaS mounts secrets under /var/openfaas/secrets): for every
`NAME` read here, `NAME_FILE` pointing at a file is accepted too.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, Field, SecretStr


class ConfigError(RuntimeError):
    """A required setting is missing or invalid; raised at start-up, never mid-request."""


def env(
    name: str, default: str | None = None, *, environ: dict[str, str] | None = None
) -> str | None:
    environ = os.environ if environ is None else environ
    value = environ.get(name)
    if value:
        return value
    path = environ.get(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{name}_FILE={path} cannot be read: {exc.strerror}") from exc
    return default


def required(name: str, *, environ: dict[str, str] | None = None) -> str:
    value = env(name, environ=environ)
    if not value:
        raise ConfigError(f"{name} (or {name}_FILE) must be set")
    return value


class StorageSettings(BaseModel):
    endpoint_url: str | None = Field(description="None means the AWS default endpoint")
    bucket: str
    access_key: SecretStr
    secret_key: SecretStr
    region: str = "us-east-1"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> StorageSettings:
        return cls(
            endpoint_url=env("S3_ENDPOINT_URL", environ=environ),
            bucket=required("S3_BUCKET", environ=environ),
            access_key=required("AWS_ACCESS_KEY_ID", environ=environ),
            secret_key=required("AWS_SECRET_ACCESS_KEY", environ=environ),
            region=env("AWS_REGION", "us-east-1", environ=environ) or "us-east-1",
        )


class RuntimeSettings(BaseModel):
    """The watchdog contract's knobs, with the OpenFaaS names where one exists."""

    port: int = 8080
    host: str = "0.0.0.0"
    exec_timeout_s: float = Field(300.0, gt=0)
    max_inflight: int = Field(1, ge=1)
    #: Calls that wait for a free slot instead of a 429 (the embedded gateway queues in front of
    #: replicas; OpenFaaS CE's gateway queues no synchronous call, so the replica does).
    max_queued: int = Field(0, ge=0)
    max_body_bytes: int = Field(1 << 20, ge=1024)
    #: Largest input object a function downloads; bigger ones get 413 before any heavy work.
    max_input_bytes: int = Field(2 << 30, ge=1)
    #: Longest media a function accepts; longer ones get 413 after probing.
    max_duration_s: float = Field(3 * 3600.0, gt=0)
    replica: str = Field(default_factory=lambda: os.uname().nodename)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> RuntimeSettings:
        e = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for field, name in [
            ("port", "PORT"),
            ("host", "HOST"),
            ("exec_timeout_s", "exec_timeout"),
            ("max_inflight", "max_inflight"),
            ("max_queued", "max_queued"),
            ("max_body_bytes", "MAX_BODY_BYTES"),
            ("max_input_bytes", "MAX_INPUT_BYTES"),
            ("max_duration_s", "MAX_DURATION_S"),
            ("replica", "REPLICA_NAME"),
        ]:
            if e.get(name):
                values[field] = _duration(e[name]) if field == "exec_timeout_s" else e[name]
        try:
            return cls.model_validate(values)
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc


def _duration(text: str) -> float:
    """OpenFaaS writes timeouts as Go durations ("300s", "5m"); bare numbers are seconds."""
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    for suffix in ("ms", "s", "m", "h"):
        if text.endswith(suffix) and text[: -len(suffix)].replace(".", "", 1).isdigit():
            return float(text[: -len(suffix)]) * units[suffix]
    try:
        return float(text)
    except ValueError as exc:
        raise ConfigError(f"not a duration: {text!r}") from exc
