"""memproxy's errors and the one function that turns them into OpenAI-shaped bodies.

Exception tree::

    ProxyError                      root; never raised itself
    ├── ClientError                 the request is wrong (4xx)
    │   ├── InvalidRequestError     400: malformed JSON, schema violation
    │   ├── AuthenticationError     401: missing or unknown API key
    │   ├── PermissionDeniedError   403: the key does not grant that user or tenant
    │   ├── NotFoundError           404: no such route or object (also: an object of another scope)
    │   ├── ConflictError           409: the object is not in a state that allows the change
    │   ├── PayloadTooLargeError    413: the body is over ``MEMPROXY_MAX_BODY_MB``
    │   ├── RateLimitError          429: the key's request rate or concurrency limit (``retry_after_s``)
    │   └── ClientClosedRequest     499: the client disconnected first (never delivered; ends the work)
    ├── UpstreamError               the model server failed us (5xx)
    │   ├── UpstreamUnreachable     502: connection refused / reset / DNS
    │   ├── UpstreamTimeout         504: no bytes within the configured timeout
    │   └── UpstreamStatusError     the upstream answered with an error status (4xx passed through, 5xx -> 502)
    ├── ServiceUnavailableError     503: a part the request needs is off or failed to start
    │   └── MemoryUnavailable       memory is turned off, or could not start (``reason``)
    └── InternalError               500: a bug of ours; the client sees a generic message, the log has the rest

Every body a client sees is built by :func:`error_body`: ``{"error": {"message", "type", "param", "code"}}``.
Messages never carry secrets or stack traces; upstream messages are passed on trimmed.
"""

from __future__ import annotations

import json
from typing import Any

MAX_UPSTREAM_MESSAGE_CHARS = 1000


class ProxyError(Exception):
    status_code: int = 500
    error_type: str = "server_error"
    default_code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code

    def to_body(self) -> dict[str, Any]:
        return error_body(self.message, self.error_type, param=self.param, code=self.code)


class ClientError(ProxyError):
    status_code = 400
    error_type = "invalid_request_error"


class InvalidRequestError(ClientError):
    status_code = 400


class AuthenticationError(ClientError):
    status_code = 401
    default_code = "invalid_api_key"


class PermissionDeniedError(ClientError):
    status_code = 403
    error_type = "permission_error"
    default_code = "permission_denied"


class NotFoundError(ClientError):
    status_code = 404
    default_code = "not_found"


class ConflictError(ClientError):
    status_code = 409
    default_code = "conflict"


class PayloadTooLargeError(ClientError):
    status_code = 413
    default_code = "request_too_large"


class RateLimitError(ClientError):
    """As OpenAI answers it (type ``requests``, code ``rate_limit_exceeded``); ``retry_after_s`` becomes the
    ``Retry-After`` header."""

    status_code = 429
    error_type = "requests"
    default_code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after_s: float, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after_s = retry_after_s


class UpstreamError(ProxyError):
    status_code = 502
    error_type = "upstream_error"


class UpstreamUnreachable(UpstreamError):
    status_code = 502
    default_code = "upstream_unreachable"


class UpstreamTimeout(UpstreamError):
    status_code = 504
    default_code = "upstream_timeout"


class UpstreamStatusError(UpstreamError):
    """The upstream answered with an error status. 4xx is the client's fault and keeps its status; 5xx becomes 502."""

    def __init__(
        self,
        upstream_status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | int | None = None,
    ) -> None:
        super().__init__(message, param=param, code=code)
        self.upstream_status = upstream_status
        if 400 <= upstream_status < 500:
            # The status, message, param and code are the upstream's; the type is OpenAI's for any client error
            # (vLLM sends Python class names such as "NotFoundError" there).
            self.status_code = upstream_status
            self.error_type = "invalid_request_error"
        else:
            self.status_code = 502
            self.error_type = "upstream_error"
            self.code = code if code is not None else "upstream_error"

    @classmethod
    def from_response(cls, status: int, content: bytes) -> UpstreamStatusError:
        """Read an upstream error body (OpenAI's nested shape or vLLM's flat one) into an error of ours."""
        message, param, code = _parse_upstream_error(content)
        if not message:
            message = f"The upstream model server answered HTTP {status}."
        elif status >= 500:
            message = f"The upstream model server failed (HTTP {status}): {message}"
        return cls(status, message, param=param, code=code)

    @property
    def exceeds_context(self) -> bool:
        """The upstream refused the prompt as longer than the model's context window (vLLM: "This model's maximum
        context length is N tokens. However, your prompt contains ..."; OpenAI: code ``context_length_exceeded``)."""
        if self.upstream_status != 400:
            return False
        text = self.message.casefold()
        return self.code == "context_length_exceeded" or "maximum context length" in text or (
            "context length" in text and "exceed" in text
        )


class ServiceUnavailableError(ProxyError):
    status_code = 503
    error_type = "server_error"
    default_code = "service_unavailable"


class MemoryUnavailable(ServiceUnavailableError):
    """``reason`` None: memory is turned off; else why it is not serving (``memory-unavailable:<error>``), as the
    chat's degraded-reason header says it."""

    default_code = "memory_unavailable"

    def __init__(self, reason: str | None) -> None:
        cause = "it is turned off" if reason is None else "it could not start"
        super().__init__(f"Memory is unavailable: {cause}.")
        self.reason = reason


class InternalError(ProxyError):
    status_code = 500
    error_type = "server_error"
    default_code = "internal_error"


def error_body(
    message: str, error_type: str, *, param: str | None = None, code: str | int | None = None
) -> dict[str, Any]:
    """The OpenAI error shape. The only place an error body is built."""
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


_ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                    404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 529: "overloaded_error"}  # fmt: skip


def anthropic_error_body(error: ProxyError) -> dict[str, Any]:
    """The same error in Anthropic's shape, for ``/v1/messages``: ``{"type": "error", "error": {"type", "message"}}``."""
    kind = _ANTHROPIC_TYPES.get(error.status_code, "api_error" if error.status_code >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": error.message}}


def error_json(error: ProxyError, path: str = "") -> bytes:
    """The error's body as bytes, in the shape of the API at ``path``."""
    return json.dumps(body_for_path(error, path), ensure_ascii=False).encode()


ANTHROPIC_PATH = "/v1/messages"


def body_for_path(error: ProxyError, path: str) -> dict[str, Any]:
    """OpenAI's shape, or Anthropic's under ``/v1/messages`` (its SDK reads no other)."""
    is_anthropic = path == ANTHROPIC_PATH or path.startswith(ANTHROPIC_PATH + "/")
    return anthropic_error_body(error) if is_anthropic else error.to_body()


def _parse_upstream_error(content: bytes) -> tuple[str, str | None, str | int | None]:
    try:
        data = json.loads(content)
    except ValueError:
        return _trim(content.decode("utf-8", "replace").strip()), None, None
    if not isinstance(data, dict):
        return "", None, None
    inner = data.get("error") if isinstance(data.get("error"), dict) else data
    message = inner.get("message") or inner.get("detail") or ""
    if not isinstance(message, str):
        message = json.dumps(message, ensure_ascii=False)
    param = inner.get("param") if isinstance(inner.get("param"), str) else None
    code = inner.get("code") if isinstance(inner.get("code"), (str, int)) else None
    return _trim(message), param, code


def _trim(message: str) -> str:
    if len(message) <= MAX_UPSTREAM_MESSAGE_CHARS:
        return message
    return message[: MAX_UPSTREAM_MESSAGE_CHARS - 1] + "…"


def invalid_request_from_validation(errors: list[dict[str, Any]], payload: Any = None) -> InvalidRequestError:
    """A pydantic / FastAPI validation failure as one 400 naming the first offending field of ``payload``."""
    if not errors:
        return InvalidRequestError("The request body is invalid.")
    first = errors[0]
    loc = list(first.get("loc", ()))
    if loc and loc[0] in _PARAMETER_LOCATIONS:
        # A query / path / header parameter: its name is the param (there is no payload to follow).
        param = str(loc[1]) if len(loc) > 1 else None
    else:
        param = _param_path([part for part in loc if part != "body"], payload)
    detail = first.get("msg", "invalid value")
    more = len({tuple(error.get("loc", ())[:-1]) for error in errors[1:]} - {tuple(first.get("loc", ())[:-1])})
    tail = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    if param:
        return InvalidRequestError(f"Invalid value for '{param}': {detail}{tail}.", param=param)
    return InvalidRequestError(f"The request body is invalid: {detail}{tail}.")


_PARAMETER_LOCATIONS = ("query", "path", "header", "cookie")


def _param_path(loc: list[Any], payload: Any) -> str | None:
    """The part of a pydantic error location that names input: pydantic appends union member tags (``str``,
    ``list[…]``) that are not fields, so the path is followed through the payload and stops where it leaves it."""
    path: list[str] = []
    node = payload
    for part in loc:
        if isinstance(node, dict) and isinstance(part, str):
            path.append(part)
            if part not in node:
                break
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            path.append(str(part))
            node = node[part]
        else:
            break
    return ".".join(path) or None


class ClientClosedRequest(ClientError):
    """The client went away before the answer; nobody reads this body (nginx's 499), it only ends the handler."""

    status_code = 499
    default_code = "client_closed_request"
