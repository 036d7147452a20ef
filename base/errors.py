"""Errors a function answers with: each maps to one HTTP status and a stable machine code.

The runtime turns any of these into `{"status": "error", "error": {"code", "message"}}`; anything
else becomes a 500 `internal` without a stack trace (the trace goes to the log only).
"""

from __future__ import annotations


class FunctionError(Exception):
    status: int = 500
    code: str = "internal"
    #: Whether a caller may retry the same invocation and hope for a different answer.
    retryable: bool = False

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class InvalidRequest(FunctionError):
    """The request itself is malformed (JSON, envelope, keys, config values)."""

    status = 400
    code = "invalid_request"


class InputNotFound(FunctionError):
    status = 404
    code = "input_not_found"


class InputTooLarge(FunctionError):
    status = 413
    code = "input_too_large"


class BadInput(FunctionError):
    """The input exists but is not usable media (empty, corrupt, wrong kind, no stream)."""

    status = 422
    code = "bad_input"


class Overloaded(FunctionError):
    status = 429
    code = "overloaded"
    retryable = True


class StorageUnavailable(FunctionError):
    status = 503
    code = "storage_unavailable"
    retryable = True


class DeadlineExceeded(FunctionError):
    status = 504
    code = "timeout"
    retryable = False
