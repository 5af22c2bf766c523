"""The `genesys` command: readable one-line errors, and no unauthenticated server off loopback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def genesys(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    child = {k: v for k, v in os.environ.items() if not k.startswith("GENESYS_")}
    child.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "genesys.cli", *args],
        capture_output=True,
        text=True,
        env=child,
        cwd=REPO,
        timeout=timeout,
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("genesys: error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_serve_refuses_a_public_address_without_keys(tmp_path: Path) -> None:
    line = one_line_error(genesys("serve", "--host", "0.0.0.0", "--data-dir", str(tmp_path)))
    assert "without API keys" in line


def test_bad_config_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("server:\n  port: many\n")
    line = one_line_error(genesys("serve", "--config", str(bad)))
    assert "server.port" in line
    assert "server.port" in one_line_error(genesys("serve", env={"GENESYS_CONFIG": str(bad)}))
    assert "not found" in one_line_error(genesys("serve", "--config", str(tmp_path / "missing.yaml")))
    assert "GENESYS_NOPE" in one_line_error(genesys("serve", env={"GENESYS_NOPE": "1"}))


@pytest.mark.parametrize("args", [["--help"], ["serve", "--help"]])
def test_help(args: list[str]) -> None:
    result = genesys(*args)
    assert result.returncode == 0 and "serve" in result.stdout
