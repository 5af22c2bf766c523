"""``genesys``: the command line. Thin: parse, call, print; every error is one readable line."""

from __future__ import annotations

import ipaddress
import os
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from genesys.errors import GenesysError

app = typer.Typer(help="Genesys: a coding assistant that gets better from its own use.", no_args_is_help=True)
F = TypeVar("F", bound=Callable[..., Any])


@app.callback()
def _root() -> None:
    """Genesys: a coding assistant that gets better from its own use."""


def fail(message: str, code: int = 2) -> None:
    typer.echo(f"genesys: error: {message}", err=True)
    raise typer.Exit(code)


def readable_errors(func: F) -> F:
    """Turn Genesys errors into one line on stderr and exit code 2, never a traceback."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except GenesysError as exc:
            fail(str(exc))
        except KeyboardInterrupt:
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config (default configs/genesys.yaml).")]
DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", help="Data directory (default ./data).")]


def _settings(config: Path | None, data_dir: Path | None, **overrides: Any) -> Any:
    from genesys.runtime.settings import load_settings

    if config is not None:
        if not config.is_file():
            fail(f"config file not found: {config}")
        os.environ["GENESYS_CONFIG"] = str(config)
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    return load_settings(**overrides)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@app.command()
@readable_errors
def serve(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    host: Annotated[str | None, typer.Option(help="Address to bind (default from config: 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default from config: 8000).")] = None,
) -> None:
    """Serve the OpenAI-compatible API with the configured engine."""
    import structlog
    import uvicorn

    from genesys.api.app import create_app
    from genesys.runtime.logging import configure_logging

    settings = _settings(config, data_dir)
    if host is not None:
        settings.server.host = host
    if port is not None:
        settings.server.port = port
    configure_logging(settings.logging.level, json_logs=settings.logging.json_logs)
    log = structlog.get_logger("genesys.serve")
    bind = settings.server.host
    if not settings.auth_enabled:
        if not is_loopback(bind):
            fail(
                f"refusing to bind {bind} without API keys: anyone on the network could use the model. "
                "Configure auth.keys (or GENESYS_AUTH__KEYS), or bind 127.0.0.1."
            )
        log.warning("auth.disabled", message="no API keys configured: serving unauthenticated on loopback only")
    application = create_app(settings)
    log.info("server.listening", url=f"http://{bind}:{settings.server.port}/v1")
    uvicorn.run(application, host=bind, port=settings.server.port, log_config=None, access_log=False)


def main() -> None:  # pragma: no cover
    sys.exit(app())


if __name__ == "__main__":  # pragma: no cover
    main()
