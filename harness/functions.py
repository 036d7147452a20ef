"""The function declarations (manifests/functions.yaml) as typed models.

One source of truth for both platforms: the embedded gateway starts replicas from these, and
the cluster manifests are rendered from them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DECLARATIONS = Path(__file__).resolve().parents[1] / "manifests" / "functions.yaml"
_UNITS = {"": 1, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "K": 10**3, "M": 10**6, "G": 10**9}


def parse_bytes(text: str | int) -> int:
    """Kubernetes quantities ("512Mi", "1Gi") as bytes."""
    if isinstance(text, int):
        return text
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|K|M|G)?", str(text).strip())
    if not match:
        raise ValueError(f"not a memory quantity: {text!r}")
    return int(float(match.group(1)) * _UNITS[match.group(2) or ""])


def parse_seconds(text: str | float) -> float:
    if isinstance(text, int | float):
        return float(text)
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)?", str(text).strip())
    if not match:
        raise ValueError(f"not a duration: {text!r}")
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}[match.group(2)]
    return float(match.group(1)) * scale


class FunctionDeclaration(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9-]{0,62}$")
    module: str = Field(pattern=r"^[a-z_][a-z0-9_.]*$")
    videosearcher: str = ""
    exec_timeout: str = "300s"
    max_inflight: int = Field(1, ge=1)
    #: Calls a replica holds waiting for a slot instead of answering 429. Only the cluster
    #: renders it (OpenFaaS CE's gateway queues no synchronous call); the embedded gateway
    #: queues in front of its replicas.
    max_queued: int = Field(0, ge=0)
    memory_limit: str = "768Mi"
    #: What the cluster reserves per replica (Kubernetes requests.memory): the measured peak
    #: with headroom, below the limit, so a small node schedules the set. None: the limit.
    memory_request: str | None = None
    cpu_limit: float | None = Field(None, gt=0)
    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(4, ge=1)
    scale_to_zero_idle: float | None = Field(None, gt=0)
    env: dict[str, str] = Field(default_factory=dict)

    @field_validator("memory_limit", "memory_request")
    @classmethod
    def _memory(cls, value: str | None) -> str | None:
        if value is not None:
            parse_bytes(value)
        return value

    @model_validator(mode="after")
    def _request_within_limit(self) -> FunctionDeclaration:
        if self.memory_request_bytes > self.memory_limit_bytes:
            raise ValueError(
                f"{self.name}: memory_request {self.memory_request} is above its memory_limit "
                f"{self.memory_limit}"
            )
        return self

    @field_validator("exec_timeout")
    @classmethod
    def _timeout(cls, value: str) -> str:
        parse_seconds(value)
        return value

    @property
    def memory_limit_bytes(self) -> int:
        return parse_bytes(self.memory_limit)

    @property
    def memory_request_bytes(self) -> int:
        return parse_bytes(self.memory_request or self.memory_limit)

    @property
    def exec_timeout_s(self) -> float:
        return parse_seconds(self.exec_timeout)


class Declarations(BaseModel):
    model_config = ConfigDict(extra="forbid")

    defaults: dict[str, Any] = Field(default_factory=dict)
    functions: list[FunctionDeclaration]

    def get(self, name: str) -> FunctionDeclaration:
        for fn in self.functions:
            if fn.name == name:
                return fn
        raise KeyError(name)

    @property
    def names(self) -> list[str]:
        return [fn.name for fn in self.functions]


def load(path: Path = DECLARATIONS) -> Declarations:
    raw = yaml.safe_load(path.read_text()) or {}
    defaults = raw.get("defaults") or {}
    functions = [{**defaults, **entry} for entry in raw.get("functions") or []]
    decl = Declarations(defaults=defaults, functions=functions)
    if len(set(decl.names)) != len(decl.names):
        raise ValueError(f"{path}: duplicate function names")
    return decl
