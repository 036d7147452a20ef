"""How many CPUs the functions can use on a cluster: the basis of every CPU-bound capacity.

The harness host's CPU count says nothing about a cluster's: the functions run on the nodes, in
pods that the scheduler places only where a node's *allocatable* CPU has room, and a pod with
a CPU limit never uses more than it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from harness.functions import FunctionDeclaration


def cpu_quantity(value: str | int | float) -> float:
    """A Kubernetes CPU quantity in cores: ``2``, ``1.5``, ``3920m``, ``500000u``, ``250n``."""
    text = str(value).strip()
    for suffix, scale in (("m", 1e-3), ("u", 1e-6), ("n", 1e-9)):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * scale
    return float(text)


def _schedulable(node: Mapping[str, Any]) -> bool:
    spec = node.get("spec") or {}
    if spec.get("unschedulable"):
        return False
    # Function pods carry no tolerations, so a NoSchedule/NoExecute taint keeps them off
    # (a control-plane node of kubeadm or kind, unless untainted).
    if any(t.get("effect") in ("NoSchedule", "NoExecute") for t in spec.get("taints") or []):
        return False
    conditions = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def function_cores(
    nodes: Mapping[str, Any], declarations: Sequence[FunctionDeclaration] = ()
) -> tuple[float, str]:
    """(cores, how they were found) from ``kubectl get nodes -o json`` and the declarations.

    The allocatable CPU of the ready nodes function pods can be scheduled on; when every
    function declares a CPU limit, at most the sum of limit x max replicas. Raises ValueError
    when no node qualifies: a capacity of 0 would size an overload regime at 0 requests/s.
    """
    items: Iterable[Mapping[str, Any]] = nodes.get("items") or []
    usable = [n for n in items if _schedulable(n)]
    names = [str((n.get("metadata") or {}).get("name")) for n in usable]
    allocatable = sum(
        cpu_quantity(((n.get("status") or {}).get("allocatable") or {}).get("cpu", 0))
        for n in usable
    )
    if not usable or allocatable <= 0:
        raise ValueError("no ready, schedulable node with allocatable CPU for the functions")
    cores = round(allocatable, 3)
    source = f"allocatable CPU of the schedulable ready node(s) {', '.join(names)}"
    if declarations and all(d.cpu_limit for d in declarations):
        limited = round(sum((d.cpu_limit or 0) * d.max_replicas for d in declarations), 3)
        if limited < cores:
            return limited, (
                f"the functions' CPU limits x max replicas (below the {cores:g} {source})"
            )
    return cores, source
