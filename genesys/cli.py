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


ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML config (default configs/genesys.yaml).")
]
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
    host: Annotated[str | None, typer.Option(help="Address to bind (default from config).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default from config: 8000).")] = None,
) -> None:
    """Serve the OpenAI-compatible API with the configured engine."""
    # Idle OpenMP threads (MiniLM, torch) sleep instead of spinning against llama.cpp's; must be set
    # before torch loads. Measured: docs retrieval 19 ms instead of 100-120 ms on 2 busy cores.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
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
        log.warning("auth.disabled", message="no API keys: serving unauthenticated, on loopback only")
    application = create_app(settings)
    log.info("server.listening", url=f"http://{bind}:{settings.server.port}/v1")
    uvicorn.run(application, host=bind, port=settings.server.port, log_config=None, access_log=False)


def _emit_bench(payload: str, table: str, json_out: Path | None) -> None:
    """A benchmark's JSON result to stdout (and ``json_out``), its table to stderr."""
    if json_out is not None:
        json_out.write_text(payload + "\n", encoding="utf-8")
    typer.echo(payload)
    typer.echo(table, err=True)


bench_app = typer.Typer(help="Benchmarks: Genesys against its baselines.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")


@bench_app.command("serve")
@readable_errors
def bench_serve(
    requests: Annotated[int, typer.Option(min=1, help="Measured requests per side.")] = 5,
    max_tokens: Annotated[int, typer.Option(min=1, help="max_tokens of every request.")] = 128,
    threads: Annotated[
        int | None, typer.Option(min=1, help="llama.cpp threads for both sides (default from config).")
    ] = None,
    json_out: Annotated[Path | None, typer.Option(help="Also write the result (JSON) to this file.")] = None,
) -> None:
    """Streaming through the API against raw llama-cpp-python: time to first token and tokens/s.

    The JSON result goes to stdout, the table and progress to stderr.
    """
    from genesys.bench.serve import format_table, run_serve_bench
    from genesys.runtime.logging import configure_logging

    configure_logging("INFO")
    result = run_serve_bench(requests=requests, max_tokens=max_tokens, n_threads=threads)
    _emit_bench(result.model_dump_json(indent=2), format_table(result), json_out)


@bench_app.command("ingest")
@readable_errors
def bench_ingest(
    interactions: Annotated[int, typer.Option(min=1, help="Synthetic interactions per round.")] = 1000,
    rounds: Annotated[int, typer.Option(min=1, help="Measured rounds, each on fresh interactions.")] = 3,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic interactions.")] = 0,
    dtype: Annotated[
        str, typer.Option(help="MiniLM's torch precision for both sides: float32, bfloat16 or auto.")
    ] = "float32",
    backend: Annotated[
        str | None,
        typer.Option(
            help="What runs MiniLM on both sides: auto, torch, onnx or onnx-int8 (ONNX Runtime). Default: "
            "onnx-int8 (the fastest that keeps float32's categories); auto when --dtype is not float32."
        ),
    ] = None,
    check_categories: Annotated[
        bool, typer.Option(help="Compare the stored categories with torch float32's (after the rounds).")
    ] = True,
    json_out: Annotated[Path | None, typer.Option(help="Also write the result (JSON) to this file.")] = None,
) -> None:
    """Interactions tagged and scored per second (analyze, end to end) against the bare embedding call.

    The JSON result goes to stdout, the table and progress to stderr.
    """
    from typing import cast

    from genesys.bench.ingest import DEFAULT_BACKEND, run_ingest_bench
    from genesys.bench.ingest import format_table as format_ingest_table
    from genesys.runtime.embeddings import EMBEDDER_BACKENDS, EmbedderBackend, EmbedderDtype
    from genesys.runtime.logging import configure_logging

    if dtype not in ("float32", "bfloat16", "auto"):
        fail(f"--dtype must be float32, bfloat16 or auto, got {dtype!r}")
    if backend is None:
        backend = DEFAULT_BACKEND if dtype == "float32" else "auto"
    if backend not in EMBEDDER_BACKENDS:
        fail(f"--backend must be one of {', '.join(EMBEDDER_BACKENDS)}, got {backend!r}")
    configure_logging("INFO")
    result = run_ingest_bench(
        interactions=interactions,
        rounds=rounds,
        seed=seed,
        dtype=cast(EmbedderDtype, dtype),
        backend=cast(EmbedderBackend, backend),
        check_categories=check_categories,
    )
    _emit_bench(result.model_dump_json(indent=2), format_ingest_table(result), json_out)


@bench_app.command("train")
@readable_errors
def bench_train(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    model: Annotated[
        Path | None, typer.Option(help="GGUF file or model dir (default: model.path, else embedded SmolLM2).")
    ] = None,
    steps: Annotated[int, typer.Option(min=1, help="Timed optimizer steps per side.")] = 20,
    warmup_steps: Annotated[int, typer.Option(min=0, help="Untimed steps first, per side.")] = 3,
    batch_size: Annotated[int, typer.Option(min=1, help="Rows per step.")] = 4,
    seq_len: Annotated[int, typer.Option(min=8, help="Tokens per row (no padding).")] = 128,
    repeats: Annotated[int, typer.Option(min=1, help="Runs per side, in ABBA order.")] = 2,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto (a GPU if torch sees one).")] = "cpu",
    json_out: Annotated[Path | None, typer.Option(help="Also write the result (JSON) to this file.")] = None,
) -> None:
    """Training tokens/s of the Trainer's SFT path against a bare peft loop on the same batches.

    The JSON result goes to stdout, the table and progress to stderr.
    """
    # Set before torch loads: the training worker runs with sleeping OpenMP threads too (see runs.py).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from genesys.bench.train import format_table as format_train_table
    from genesys.bench.train import run_train_bench
    from genesys.runtime.logging import configure_logging

    settings = _settings(config, data_dir)
    configure_logging("INFO")
    lora = settings.autogen_agents.trainer_agent.lora_config
    result = run_train_bench(
        model_path=model or settings.model.path,
        cache_dir=settings.data_dir / "cache" / "models",
        steps=steps,
        warmup_steps=warmup_steps,
        batch_size=batch_size,
        seq_len=seq_len,
        repeats=repeats,
        device=device,
        **({"lora_rank": lora.rank, "lora_alpha": lora.alpha, "lora_dropout": lora.dropout} if lora else {}),
    )
    _emit_bench(result.model_dump_json(indent=2), format_train_table(result), json_out)


# Command groups in their own modules; they register on ``genesys.cli.app`` when imported.
from genesys import cli_knowledge, cli_learning, cli_monitor, cli_rollout, cli_simulate  # noqa: E402,F401


def main() -> None:  # pragma: no cover
    sys.exit(app())


if __name__ == "__main__":  # pragma: no cover
    # Run as ``python -m genesys.cli`` this file is ``__main__``, a second module next to
    # ``genesys.cli``, where the command groups registered: run that module's app.
    from genesys.cli import main as _main

    _main()
