"""The error hierarchy of Genesys.

Three families, as in pydantic-ai: mistakes of the caller (``InvalidRequest`` and its kin), failures
of a model or provider (``EngineError``) and limits (``LimitExceeded``). They are converted to HTTP
errors only in ``genesys.api`` and to CLI errors only in ``genesys.cli``.
"""

from __future__ import annotations


class GenesysError(Exception):
    """Base of every error Genesys raises on purpose."""


class ConfigError(GenesysError):
    """The configuration is missing, malformed or contradictory."""


class InvalidRequest(GenesysError):
    """The caller sent something that cannot be served as asked."""

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.param = param
        self.code = code


class NotFound(InvalidRequest):
    """The caller named something that does not exist (a model, an interaction)."""


class LimitExceeded(InvalidRequest):
    """The request is over a limit: the context window, the body size."""


class ExportError(InvalidRequest):
    """An adapter or model cannot be converted to the asked format: a file is missing, or it uses a
    feature the target format has no place for (DoRA, a non-llama base, ...)."""


class AuthError(GenesysError):
    """Missing or wrong credentials, or a role that may not do this."""

    def __init__(self, message: str, *, forbidden: bool = False) -> None:
        super().__init__(message)
        self.forbidden = forbidden


class EngineError(GenesysError):
    """The inference engine or a remote provider failed."""


class EngineUnavailable(EngineError):
    """The engine is not loaded yet, or the remote server cannot be reached."""
