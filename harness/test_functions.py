"""manifests/functions.yaml: memory requests sized below the limits, never above them."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from harness.functions import DECLARATIONS, FunctionDeclaration, load

MIB = 1 << 20


def test_every_function_requests_less_than_its_limit() -> None:
    functions = load(DECLARATIONS).functions
    for decl in functions:
        assert decl.memory_request is not None, decl.name
        assert decl.memory_request_bytes < decl.memory_limit_bytes, decl.name
    # What an 8 GB laptop's node must hold for one replica of each function.
    assert sum(d.memory_request_bytes for d in functions) <= 3 * 1024 * MIB


def test_request_defaults_to_the_limit_and_may_not_exceed_it() -> None:
    decl = FunctionDeclaration(name="f", module="m", memory_limit="512Mi")
    assert decl.memory_request_bytes == 512 * MIB
    with pytest.raises(ValidationError, match="above its memory_limit"):
        FunctionDeclaration(name="f", module="m", memory_limit="256Mi", memory_request="300Mi")
