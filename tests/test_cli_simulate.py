"""``genesys simulate`` and ``genesys bench loop``: every mistake in the arguments is one readable line
on stderr with exit code 2, before any model loads or any request is sent."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from typer.testing import CliRunner, Result

from genesys.cli import app

REPO = Path(__file__).resolve().parents[1]
FERNWICK = REPO / "tests" / "data" / "fernwick_scenario.jsonl"


def run(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def one_line_error(result: Result) -> str:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("genesys: error: "), result.stderr
    assert result.stdout == ""
    return lines[0].removeprefix("genesys: error: ")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens once the socket is closed


def test_simulate_argument_errors_are_one_line(tmp_path: Path) -> None:
    assert one_line_error(run("simulate")) == (
        "--scenario FILE is required (a scenario file, JSONL: see ARCHITECTURE.md)"
    )
    assert one_line_error(run("simulate", "--scenario", str(tmp_path / "nope.jsonl"))) == (
        f"scenario file not found: {tmp_path / 'nope.jsonl'}"
    )
    scenario = str(FERNWICK)
    assert one_line_error(run("simulate", "--scenario", scenario, "--users", "0")) == (
        "--users must be a positive whole number, got 0"
    )
    assert one_line_error(run("simulate", "--scenario", scenario, "--max-minutes", "-1")) == (
        "--max-minutes must be a positive number, got -1"
    )
    assert one_line_error(run("simulate", "--scenario", scenario, "--run-tag", "a b")) == (
        "--run-tag must be 1 to 40 letters, digits, '.', '_' or '-', got 'a b'"
    )
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"id": "x", "topic": "t"}\n', encoding="utf-8")
    assert one_line_error(run("simulate", "--scenario", str(broken))).startswith(f"{broken}:1: ")
    port = closed_port()
    unreachable = one_line_error(
        run("simulate", "--scenario", scenario, "--server", f"http://127.0.0.1:{port}")
    )
    assert unreachable.startswith(f"cannot reach the Genesys server at http://127.0.0.1:{port} (")
    assert unreachable.endswith("is `genesys serve` running?")


def test_bench_loop_argument_errors_are_one_line(tmp_path: Path) -> None:
    assert one_line_error(run("bench", "loop")).startswith("--scenario FILE is required")
    scenario = str(FERNWICK)
    assert one_line_error(run("bench", "loop", "--scenario", str(tmp_path / "nope.jsonl"))) == (
        f"scenario file not found: {tmp_path / 'nope.jsonl'}"
    )
    assert one_line_error(run("bench", "loop", "--scenario", scenario, "--max-minutes", "0")) == (
        "--max-minutes must be a positive number, got 0"
    )
    assert one_line_error(run("bench", "loop", "--scenario", scenario, "--stage-seconds", "-5")) == (
        "--stage-seconds must be a positive number, got -5"
    )
    assert one_line_error(run("bench", "loop", "--scenario", scenario, "--min-samples", "0")) == (
        "--min-samples must be a positive whole number, got 0"
    )
    assert one_line_error(
        run("bench", "loop", "--scenario", scenario, "--config", str(tmp_path / "c.yaml"))
    ) == (f"config file not found: {tmp_path / 'c.yaml'}")
    used = tmp_path / "used"
    used.mkdir()
    (used / "genesys.db").write_text("", encoding="utf-8")
    assert one_line_error(run("bench", "loop", "--scenario", scenario, "--data-dir", str(used))) == (
        f"--data-dir {used} is not an empty directory: the benchmark needs a fresh one"
    )
    no_holdout = tmp_path / "no-holdout.jsonl"
    item = json.loads(FERNWICK.read_text(encoding="utf-8").splitlines()[0]) | {"holdout": []}
    no_holdout.write_text(json.dumps(item) + "\n", encoding="utf-8")
    assert one_line_error(run("bench", "loop", "--scenario", str(no_holdout))) == (
        f"{no_holdout} has no holdout phrasings: nothing to measure before and after"
    )
