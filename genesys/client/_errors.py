"""The SDK's errors: part of Genesys' one hierarchy (``genesys.errors.GenesysError``).

Every failure to get an answer from the server is a ``GenesysAPIError`` carrying the server's
OpenAI-style error (``message``, ``type``, ``code``, ``param``), the HTTP status, the request id of the
server's log lines, and a ``hint``: one sentence on what to do about it. The subclass says which kind
of failure it is, so callers can catch what they can handle::

    GenesysError                      genesys.errors: anything Genesys raises on purpose
    ├── GenesysAPIError               the server refused or could not answer
    │   ├── BadRequestError           400, 413, 422: the request must change
    │   ├── AuthenticationError       401: no key, or a wrong one
    │   │   └── PermissionDeniedError 403: the key's role may not do this
    │   ├── NotFoundError             404: no such interaction, cycle, model or route
    │   ├── ConflictError             409: e.g. a learning cycle is already running
    │   ├── UnavailableError          503, no connection, a timeout: try again later
    │   └── ServerError               500 and other 5xx: see the server's log
    └── WaitTimeout                   waiting for a cycle or for readiness took too long
"""

from __future__ import annotations

import contextlib
from typing import Any

import httpx

from genesys.errors import GenesysError

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "GenesysAPIError",
    "GenesysError",
    "NotFoundError",
    "PermissionDeniedError",
    "ServerError",
    "UnavailableError",
    "WaitTimeout",
]


class GenesysAPIError(GenesysError):
    """The server refused a request or could not be reached.

    Attributes: ``message`` (the server's words), ``status`` (None when no answer came), ``type``,
    ``code`` and ``param`` (OpenAI's error fields), ``hint`` (what to do), ``request_id`` (find the
    server's log lines with it), ``method`` and ``url``.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        type: str | None = None,
        code: str | None = None,
        param: str | None = None,
        hint: str | None = None,
        request_id: str | None = None,
        method: str | None = None,
        url: str | None = None,
    ) -> None:
        self.message = message
        self.status = status
        self.type = type
        self.code = code
        self.param = param
        self.hint = hint
        self.request_id = request_id
        self.method = method
        self.url = url
        super().__init__(self._describe())

    def _describe(self) -> str:
        where = f" ({self.method} {self.url})" if self.method and self.url else ""
        status = f"HTTP {self.status}" if self.status is not None else "no answer"
        code = f", {self.code}" if self.code else ""
        text = f"{self.message} [{status}{code}]{where}"
        return f"{text}. {self.hint}" if self.hint else text


class BadRequestError(GenesysAPIError):
    """400, 413 or 422: the request itself must change (``param`` names the field when known)."""


class AuthenticationError(GenesysAPIError):
    """401: the server has API keys and this request had none, or a wrong one."""


class PermissionDeniedError(AuthenticationError):
    """403: the key is valid but its role (user, operator, admin) may not do this."""


class NotFoundError(GenesysAPIError):
    """404: no such interaction, cycle or model — or the server has no such route (an older server)."""


class ConflictError(GenesysAPIError):
    """409: the server's state forbids it now (a learning cycle is already running)."""


class UnavailableError(GenesysAPIError):
    """503, a refused connection or a timeout: the server is down, starting or busy; try again."""


class ServerError(GenesysAPIError):
    """500 or another 5xx: the server failed; its log (find ``request_id``) says why."""


class WaitTimeout(GenesysError):
    """Waiting (for readiness, for a cycle to end) took longer than the caller allowed. ``last`` holds
    the last state seen."""

    def __init__(self, message: str, *, last: Any = None) -> None:
        super().__init__(message)
        self.last = last


# Hints by the server's error code, then by HTTP status. Each says what to do, in one sentence.
_CODE_HINTS = {
    "model_not_found": "Use the server's model name (client.models() lists them), or leave model unset.",
    "interaction_not_found": "Use the interaction_id of a reply of this server (ChatResult.interaction_id).",
    "context_length_exceeded": "Send fewer or shorter messages, or a smaller max_tokens.",
    "body_too_large": "Send a smaller request; the server's limit is server.max_body_bytes.",
    "invalid_json": "The SDK sent malformed JSON; please report it.",
    "not_found": "The server has no such endpoint: it is older than this SDK; upgrade it.",
    "cycle_in_progress": "One cycle runs at a time: follow the running one with client.wait_for_cycle(id) "
    "(client.cycles() lists it), then start another.",
    "not_validated": "Only a validated adapter can be rolled out; client.cycles() shows the verdict.",
    "no_rollout": "No rollout is in progress; client.rollout() shows the current state.",
    "nothing_waiting": "No rollout is waiting for approval; client.rollout() shows the current state.",
    "rollout_in_progress": "Finish the current rollout first (client.rollout() shows it).",
}
_STATUS_HINTS = {
    400: "Fix the request as the message says.",
    401: "Pass api_key= to GenesysClient or set GENESYS_API_KEY to a key from the server's auth.keys.",
    403: "Use a key with the role the message names (operators and admins steer cycles, KPIs and rollouts).",
    404: "Check the name or id: this server has nothing by it.",
    409: "Wait for what is running to finish, then retry.",
    413: "Send a smaller request.",
    422: "Fix the request as the message says.",
    502: "The model engine behind Genesys failed; see the server's log.",
    503: "The server is starting or its model is loading: retry, or call client.wait_until_ready().",
}


def hint_for(status: int | None, code: str | None) -> str | None:
    if code and code in _CODE_HINTS:
        return _CODE_HINTS[code]
    if status is None:
        return None
    if status in _STATUS_HINTS:
        return _STATUS_HINTS[status]
    if status >= 500:
        return "The server failed; its log (search for the request id) says why."
    return None


def _class_for(status: int) -> type[GenesysAPIError]:
    if status == 401:
        return AuthenticationError
    if status == 403:
        return PermissionDeniedError
    if status == 404:
        return NotFoundError
    if status == 409:
        return ConflictError
    if status in (503, 504):
        return UnavailableError
    if status >= 500:
        return ServerError
    return BadRequestError


def error_from_body(
    status: int,
    body: Any,
    *,
    request_id: str | None = None,
    method: str | None = None,
    url: str | None = None,
) -> GenesysAPIError:
    """The error for an OpenAI-style error body (``{"error": {...}}``), or any other body."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        message = str(error.get("message") or f"HTTP {status}")
        type_, code, param = error.get("type"), error.get("code"), error.get("param")
    else:
        detail = body.get("detail") if isinstance(body, dict) else None
        message = str(detail or (body if isinstance(body, str) and body else f"HTTP {status}"))[:500]
        type_ = code = param = None
    return _class_for(status)(
        message,
        status=status,
        type=type_,
        code=code,
        param=param,
        hint=hint_for(status, code),
        request_id=request_id,
        method=method,
        url=url,
    )


def error_from_response(response: httpx.Response) -> GenesysAPIError:
    """The error for a 4xx or 5xx response (its body must have been read)."""
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    return error_from_body(
        response.status_code,
        body,
        request_id=response.headers.get("x-request-id"),
        method=response.request.method,
        url=str(response.request.url),
    )


def error_from_transport(exc: httpx.TransportError, base_url: str) -> UnavailableError:
    """The error for a request that got no answer: refused, unresolved, timed out, cut off."""
    method: str | None = None
    url: str | None = None
    with contextlib.suppress(RuntimeError):  # raised when no request was attached
        method, url = exc.request.method, str(exc.request.url)
    if isinstance(exc, httpx.TimeoutException):
        message = f"the server at {base_url} did not answer in time ({type(exc).__name__})"
        hint = (
            "It may be busy (a long answer, a training run): retry, or give GenesysClient a larger timeout."
        )
    else:
        message = f"cannot reach the Genesys server at {base_url}: {exc or type(exc).__name__}"
        hint = (
            "Start it (`genesys serve`, or `make run`) or point the client at it: "
            "GenesysClient('http://host:8000') or GENESYS_URL."
        )
    return UnavailableError(message, hint=hint, method=method, url=url)
