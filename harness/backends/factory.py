"""Backends by name, for the CLI: ``embedded`` always, ``kind``/``k8s`` when present.

Imported on demand, so a missing or broken backend only matters to whoever asks for it.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any, cast

from harness.backend import Backend

#: Backend name -> (module, class).
KNOWN: dict[str, tuple[str, str]] = {
    "embedded": ("harness.backends.embedded", "EmbeddedBackend"),
    "kind": ("harness.backends.kind", "KindBackend"),
    "k8s": ("harness.backends.k8s", "K8sBackend"),
}


class BackendUnavailable(RuntimeError):
    """The backend asked for is not in this checkout (or not what it should be)."""


def create_backend(name: str, **options: Any) -> Backend:
    """An undeployed backend by name. ``options`` its constructor does not take are dropped,
    so one CLI can pass its whole set (state dir, limits, ...) to either backend."""
    if name not in KNOWN:
        raise BackendUnavailable(f"unknown backend {name!r}; known: {', '.join(KNOWN)}")
    module_name, class_name = KNOWN[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise  # the module is there but one of its own imports is not: show that
        path = module_name.replace(".", "/") + ".py"
        raise BackendUnavailable(
            f"the {name} backend is not available: {path} is not in this checkout; "
            "use --backend embedded"
        ) from None
    cls = getattr(module, class_name, None)
    if cls is None:
        raise BackendUnavailable(f"{module_name} has no {class_name}")
    params = inspect.signature(cls).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    accepted = {k: v for k, v in options.items() if takes_any or k in params}
    return cast(Backend, cls(**accepted))
