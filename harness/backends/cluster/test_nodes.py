"""The cores a cluster's functions can use, from its nodes and the functions' CPU limits."""

from __future__ import annotations

from typing import Any

import pytest

from harness.backends.cluster.nodes import cpu_quantity, function_cores
from harness.functions import FunctionDeclaration


def _node(name: str, cpu: str, *, ready: bool = True, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": spec,
        "status": {
            "allocatable": {"cpu": cpu, "memory": "8Gi"},
            "capacity": {"cpu": "64"},
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def test_cpu_quantities() -> None:
    assert cpu_quantity("2") == 2.0
    assert cpu_quantity("3920m") == pytest.approx(3.92)
    assert cpu_quantity("1.5") == 1.5
    assert cpu_quantity("250000u") == pytest.approx(0.25)
    assert cpu_quantity(4) == 4.0


def test_allocatable_of_the_nodes_function_pods_can_use() -> None:
    nodes = {
        "items": [
            _node("worker-a", "3920m"),
            _node("worker-b", "2"),
            # Not the capacity (64): kubelet reservations come off allocatable.
            _node("cordoned", "8", unschedulable=True),
            _node("control", "4", taints=[{"key": "cp", "effect": "NoSchedule"}]),
            _node("prefers-not", "1", taints=[{"key": "x", "effect": "PreferNoSchedule"}]),
            _node("down", "16", ready=False),
        ]
    }
    cores, source = function_cores(nodes)
    assert cores == pytest.approx(6.92)
    assert "worker-a, worker-b, prefers-not" in source and "allocatable" in source


def test_declared_cpu_limits_bound_the_cores_when_every_function_has_one() -> None:
    nodes = {"items": [_node("n", "8")]}
    limited = [
        FunctionDeclaration(name="a", module="a", cpu_limit=0.5, max_replicas=2),
        FunctionDeclaration(name="b", module="b", cpu_limit=1.0, max_replicas=3),
    ]
    cores, source = function_cores(nodes, limited)
    assert cores == 4.0 and "CPU limits" in source
    # One unlimited function can use the whole node: the limits bound nothing.
    open_ended = [*limited, FunctionDeclaration(name="c", module="c")]
    assert function_cores(nodes, open_ended)[0] == 8.0
    # Limits above what the nodes have: the nodes bound.
    assert function_cores({"items": [_node("n", "2")]}, limited)[0] == 2.0


def test_no_usable_node_is_an_error_not_zero_cores() -> None:
    with pytest.raises(ValueError, match="no ready, schedulable node"):
        function_cores({"items": [_node("down", "4", ready=False)]})
    with pytest.raises(ValueError):
        function_cores({"items": []})
