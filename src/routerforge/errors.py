"""The one exception hierarchy of routerforge.

Every message is written for the person who will read it: what went wrong and what to do next.
Errors become user output in exactly two places: the CLI wrapper (``cli/main.py``) prints
``str(error)`` as one line and exits with ``error.exit_code``; the gateway looks the class up along
its MRO and answers with an OpenAI-style ``{"error": ...}`` body and ``error.http_status``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class RouterForgeError(Exception):
    """Root of every error routerforge raises on purpose."""

    exit_code: int = 1
    http_status: int = 500
    error_type: str = "routerforge_error"
    code: str | None = None  # OpenAI-style machine-readable ``error.code`` (e.g. "context_length_exceeded")
    param: str | None = None  # the request field at fault, as ``error.param``

    def __init__(
        self, message: str, *, hint: str | None = None, code: str | None = None, param: str | None = None
    ) -> None:
        self.message = message
        self.hint = hint
        if code is not None:
            self.code = code
        if param is not None:
            self.param = param
        super().__init__(message if hint is None else f"{message} {hint}")


class ConfigError(RouterForgeError):
    """Settings, a YAML file or a CLI flag are invalid."""

    exit_code = 2
    http_status = 400
    error_type = "invalid_request_error"


class DataError(RouterForgeError):
    """Input data is malformed. Names the file, the line and the column where it can."""

    exit_code = 2
    http_status = 400
    error_type = "invalid_request_error"

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        column: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.path = path
        self.line = line
        self.column = column
        self.reason = message  # the message without the "path:line column" prefix
        where = ""
        if path is not None:
            where = str(path)
            if line is not None:
                where += f":{line}"
            if column is not None:
                where += f" column {column!r}"
            where += ": "
        super().__init__(where + message, hint=hint)


class ScoreScaleError(DataError):
    """A score outside [0, 1] (or outside the declared ``--score-scale``); ``value`` is the raw score."""

    def __init__(self, message: str, *, value: float, **where: Any) -> None:
        self.value = value
        super().__init__(message, **where)


class ValidationError(RouterForgeError):
    """A request or argument has the wrong shape or value."""

    exit_code = 2
    http_status = 400
    error_type = "invalid_request_error"


class RequestTooLargeError(ValidationError):
    """A request body is over the gateway's ``limits.max_body_bytes``."""

    http_status = 413
    code = "request_too_large"


class RequestTimeoutError(ValidationError):
    """The client sent its request body too slowly (``limits.body_timeout_s``)."""

    http_status = 408
    code = "request_timeout"


class ClientDisconnectedError(RouterForgeError):
    """The HTTP client went away before its answer was sent (logged with status 499)."""

    http_status = 499
    error_type = "client_disconnected"


class NotFittedError(RouterForgeError, RuntimeError):
    """A router was asked to predict before ``fit``."""

    exit_code = 2

    def __init__(self, what: str = "This router") -> None:
        super().__init__(
            f"{what} is not fitted yet.", hint="Call fit() first or load a trained router directory."
        )


class ArtifactError(RouterForgeError):
    """A router artifact on disk is missing, from another version, or does not match the data."""

    exit_code = 2
    http_status = 500


class RouterUnavailableError(ArtifactError):
    """A router directory the gateway found cannot be loaded (corrupt or incomplete files)."""

    http_status = 503
    error_type = "server_error"
    code = "router_unavailable"


class IndexUnavailableError(ConfigError):
    """The Qdrant server named by ``index.url`` cannot be reached or refused a request."""

    http_status = 503
    error_type = "server_error"


def _available(names: Iterable[str]) -> str:
    listed = sorted(names)
    return ", ".join(listed) if listed else "(none)"


class NotFoundError(RouterForgeError, KeyError):
    """Something named by the user does not exist."""

    exit_code = 2
    http_status = 404
    error_type = "not_found_error"

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0] if self.args else self.message


class UnknownRouterError(NotFoundError):
    def __init__(self, name: str, available: Iterable[str], *, hint: str | None = None) -> None:
        super().__init__(
            f"No router named {name!r}. Available: {_available(available)}.",
            hint=hint or "Train one with `routerforge train`.",
        )


class UnknownModelError(NotFoundError):
    def __init__(self, name: str, available: Iterable[str], *, hint: str | None = None) -> None:
        super().__init__(f"No model named {name!r}. Available: {_available(available)}.", hint=hint)


class UnknownDatasetError(NotFoundError):
    def __init__(self, name: str, available: Iterable[str], *, hint: str | None = None) -> None:
        super().__init__(
            f"No dataset named {name!r}. Available: {_available(available)}.",
            hint=hint or "Import one with `routerforge data import PATH --name NAME`.",
        )


class UpstreamError(RouterForgeError):
    """A candidate model's provider failed (HTTP error, timeout, malformed answer)."""

    http_status = 502
    error_type = "upstream_error"

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        status_code: int | None = None,
        retryable: bool = False,
        hint: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        self.provider = provider
        self.status_code = status_code
        self.retryable = retryable
        self.retry_after_s = retry_after_s  # the upstream's Retry-After, in seconds, when it sent one
        super().__init__(message, hint=hint)


class AuthError(RouterForgeError):
    http_status = 401
    error_type = "authentication_error"
    exit_code = 2


class PermissionDeniedError(RouterForgeError):
    http_status = 403
    error_type = "permission_error"
    exit_code = 2


class BudgetExceededError(RouterForgeError):
    http_status = 429
    error_type = "insufficient_quota"


class RateLimitError(RouterForgeError):
    http_status = 429
    error_type = "rate_limit_error"


class RequestLogError(RouterForgeError):
    """The request log could not be written while ``logging.durability: commit`` requires every row."""

    http_status = 503
    error_type = "server_error"
    code = "request_log_unavailable"


class SpendingCapError(RouterForgeError):
    """An evaluation run reached its hard spending cap. ``report`` holds the run's report when set."""

    exit_code = 3
    report: Any = None


class FallbackExhaustedError(UpstreamError):
    """Every candidate of a fallback chain failed, was cooling down, or did not fit the request.

    ``attempts`` holds the ``routerforge.backends.reliability.Attempt`` records, in order, so the
    caller can log them. ``status_code`` and ``retryable`` are those of the last real failure. When
    no candidate could even be tried because none fits the request (context window, capabilities),
    ``http_status`` is 400 on the instance: the request, not the upstream, is at fault.
    """

    def __init__(
        self,
        message: str,
        *,
        attempts: list[Any] | None = None,
        provider: str | None = None,
        status_code: int | None = None,
        retryable: bool = False,
        hint: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        self.attempts: list[Any] = list(attempts or [])
        super().__init__(
            message,
            provider=provider,
            status_code=status_code,
            retryable=retryable,
            hint=hint,
            retry_after_s=retry_after_s,
        )
