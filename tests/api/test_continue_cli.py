"""A real IDE client: the Continue CLI (`cn`, npm @continuedev/cli) against the real server.

`cn -p` runs Continue's agent headless: it sends its system prompt and its tool definitions with the
question, and prints the final answer. The server runs in a child process (``genesys serve``), so
these tests cover the shipped command, not just the app object.

Offline. The CLI is given a throw-away HOME and Continue dir, no OpenTelemetry variables (it exports
metrics only when one is set), and CONTINUE_API_BASE on a dead loopback port (hub look-ups, e.g. of
an unresolved ``${{ secrets.X }}``, fail at once). One call cannot be turned off: at start-up
cn 1.5.x asks ``https://api.continue.dev/cn/info?id=<machine id>`` for the latest version and
ignores any failure. A preload (``NODE_OPTIONS=--require``) refuses every DNS look-up but
``localhost``, so that call, or any other outside call, never leaves the machine even where there
is a network.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from genesys.runtime.store import Interaction, Store
from tests.support.server import REPO_ROOT, RunningServer, started_server

CN = REPO_ROOT / "node_modules" / ".bin" / "cn"
SHIPPED_CONFIG = REPO_ROOT / "configs" / "continue" / "config.yaml"
CN_TIMEOUT_S = 420
DEAD_HUB = "http://127.0.0.1:9/"  # the discard port: nothing listens, connections are refused at once
# Tools that change the machine or reach the network. In headless mode cn runs every tool call
# without asking, and the model may call tools: keep these away from it.
EXCLUDED_TOOLS = ("Bash", "Fetch", "Write", "Edit", "MultiEdit")
API_KEY = "sk-genesys-continue-test-0123456789abcdef"

OFFLINE_GUARD_JS = r"""
"use strict";
// Loaded with NODE_OPTIONS=--require: every DNS look-up but localhost fails, and is noted.
const dns = require("node:dns");
const fs = require("node:fs");
const noteFile = process.env.CN_OFFLINE_GUARD_LOG;
const allowed = new Set(["localhost"]);
function refuse(host) {
  if (noteFile) fs.appendFileSync(noteFile, host + "\n");
  const err = new Error(`getaddrinfo ENOTFOUND ${host} (the test runs offline)`);
  Object.assign(err, { code: "ENOTFOUND", errno: -3008, syscall: "getaddrinfo", hostname: host });
  return err;
}
const lookup = dns.lookup;
dns.lookup = function (host, options, callback) {
  if (typeof options === "function") { callback = options; options = {}; }
  if (allowed.has(host)) return lookup.call(this, host, options, callback);
  const err = refuse(host);
  process.nextTick(() => callback(err));
  return {};
};
const promiseLookup = dns.promises.lookup;
dns.promises.lookup = async function (host, options) {
  if (allowed.has(host)) return promiseLookup.call(this, host, options);
  throw refuse(host);
};
"""


@dataclass
class CnRun:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    blocked_hosts: list[str]
    server: RunningServer

    def describe(self) -> str:
        requests = "\n".join(json.dumps(r) for r in self.server.http_requests()) or "(none)"
        return (
            f"cn exited {self.returncode}: {' '.join(self.args)}\n"
            f"--- stdout ---\n{self.stdout[-4000:]}\n--- stderr ---\n{self.stderr[-4000:]}\n"
            f"--- outside look-ups refused: {sorted(set(self.blocked_hosts)) or 'none'}\n"
            f"--- server requests ---\n{requests}\n--- server log tail ---\n{self.server.log_tail(20)}"
        )


def require_cn() -> Path:
    """The `cn` binary; missing means the set-up is broken, so the test fails rather than skips."""
    if not CN.exists():
        pytest.fail(
            f"the Continue CLI is not installed ({CN} is missing): run `make install` "
            "(or `npm install` in the repository root); `make test` does it for you",
            pytrace=False,
        )
    if shutil.which("node") is None:
        pytest.fail("`node` is not on PATH: the Continue CLI needs Node.js 20 or later", pytrace=False)
    return CN


def shipped_config() -> dict[str, Any]:
    config = yaml.safe_load(SHIPPED_CONFIG.read_text(encoding="utf-8"))
    assert isinstance(config, dict)
    return config


def write_config(path: Path, api_base: str, *, api_key: str | None = None) -> Path:
    """The shipped config, pointed at ``api_base`` (and given ``api_key`` if set)."""
    config = shipped_config()
    for model in config["models"]:
        model["apiBase"] = api_base
        if api_key is not None:
            model["apiKey"] = api_key
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def cn_env(
    home: Path, guard: Path, guard_log: Path, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    dropped = ("OTEL_", "CONTINUE_", "GENESYS_", "ANTHROPIC_", "OPENAI_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    env.pop("NODE_OPTIONS", None)
    env.update(
        HOME=str(home),
        USERPROFILE=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        CONTINUE_GLOBAL_DIR=str(home / ".continue"),
        CONTINUE_API_BASE=DEAD_HUB,
        CONTINUE_METRICS_ENABLED="0",
        CONTINUE_CLI_ENABLE_TELEMETRY="0",
        NODE_OPTIONS=f"--require {guard}",
        CN_OFFLINE_GUARD_LOG=str(guard_log),
        NO_COLOR="1",
    )
    env.update(extra or {})
    return env


def run_cn(
    cn: Path,
    tmp: Path,
    server: RunningServer,
    prompt: str,
    config: Path,
    *,
    env: Mapping[str, str] | None = None,
) -> CnRun:
    home, workspace = tmp / "home", tmp / "workspace"
    home.mkdir(exist_ok=True)
    workspace.mkdir(exist_ok=True)
    guard, guard_log = tmp / "offline-guard.cjs", tmp / "offline-guard.log"
    guard.write_text(OFFLINE_GUARD_JS, encoding="utf-8")
    guard_log.unlink(missing_ok=True)
    args = [str(cn), "-p", prompt, "--config", str(config)]
    for tool in EXCLUDED_TOOLS:
        args += ["--exclude", tool]
    try:
        done = subprocess.run(
            args,
            cwd=workspace,
            env=cn_env(home, guard, guard_log, env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=CN_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(
            f"cn did not finish within {CN_TIMEOUT_S} s: {' '.join(args)}\n"
            f"stdout: {exc.stdout!r}\nstderr: {exc.stderr!r}\nserver log:\n{server.log_tail()}"
        )
    blocked = guard_log.read_text(encoding="utf-8").split() if guard_log.exists() else []
    return CnRun(args, done.returncode, done.stdout, done.stderr, blocked, server)


def user_text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):  # OpenAI content parts
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content if isinstance(content, str) else ""


def interactions_for(server: RunningServer, prompt: str) -> list[Interaction]:
    store = Store(server.database_url)
    try:
        return [
            i
            for i in store.interactions.list(limit=1000)
            if any(m.get("role") == "user" and prompt in user_text(m) for m in i.request_messages)
        ]
    finally:
        store.close()


def assert_answered_and_stored(run: CnRun, prompt: str) -> None:
    assert run.returncode == 0, run.describe()
    printed = run.stdout.strip()
    assert printed, f"cn printed no answer\n{run.describe()}"
    assert not printed.startswith('{"status":"error"'), run.describe()

    api_requests = [r for r in run.server.http_requests() if str(r.get("path", "")).startswith("/v1/")]
    assert api_requests, f"cn never reached the server\n{run.describe()}"
    rejected = [r for r in api_requests if int(r["status"]) >= 400]
    assert not rejected, f"the server rejected Continue's requests: {rejected}\n{run.describe()}"

    turns = interactions_for(run.server, prompt)
    assert turns, f"no stored interaction carries the prompt\n{run.describe()}"
    for turn in turns:
        assert turn.endpoint == "chat"
        assert turn.status == "completed", (turn.status, turn.error)
        assert turn.model_version
        tools = turn.context.get("tools")
        if tools is not None:  # Continue's agent sends its tools; the reply must still succeed
            assert isinstance(tools, list) and tools, turn.context
            names = {t["function"]["name"] for t in tools if t.get("type") == "function"}
            assert names, tools
            assert names.isdisjoint(EXCLUDED_TOOLS), names
    final = turns[-1]  # after any tool round trips, the last turn holds the printed answer
    assert final.answer.strip(), final
    assert final.answer.strip() in run.stdout, (
        f"cn printed something other than Genesys' answer {final.answer!r}\n{run.describe()}"
    )


def test_the_shipped_config_points_every_role_at_genesys() -> None:
    from genesys.runtime.settings import ModelConfig

    config = shipped_config()
    assert {"name", "version", "schema", "models"} <= config.keys()
    assert config["schema"] == "v1"
    (model,) = config["models"]
    assert model["provider"] == "openai"
    assert model["model"] == ModelConfig.model_fields["name"].default
    assert model["apiBase"] == "http://127.0.0.1:8000/v1"
    assert model["apiKey"] and "${{" not in model["apiKey"]  # works against a server without keys
    assert set(model["roles"]) == {"chat", "edit", "apply", "autocomplete"}
    (data,) = config["data"]  # Continue's dev-data events go to Genesys' feedback endpoint
    assert data["destination"] == "http://127.0.0.1:8000/v1/continue/events" and data["schema"] == "0.2.0"


@pytest.mark.slow
@pytest.mark.continue_cli
def test_cn_sends_the_key_from_a_secret_and_a_wrong_key_is_refused(tmp_path: Path) -> None:
    """The shipped config's advice: ``apiKey: ${{ secrets.GENESYS_API_KEY }}`` plus the variable."""
    cn = require_cn()
    keys = json.dumps([{"name": "continue-test", "role": "user", "key": API_KEY}])
    prompt = "In one sentence, what is a Python dict?"
    with started_server(tmp_path / "data", env={"GENESYS_AUTH__KEYS": keys}) as server:
        config = write_config(
            tmp_path / "continue.yaml", server.api_base, api_key="${{ secrets.GENESYS_API_KEY }}"
        )

        refused = run_cn(cn, tmp_path, server, "Say hi.", config, env={"GENESYS_API_KEY": "sk-wrong-key"})
        assert refused.returncode != 0, refused.describe()
        statuses = [r["status"] for r in server.http_requests() if r["path"] == "/v1/chat/completions"]
        assert statuses and set(statuses) == {401}, refused.describe()
        assert not interactions_for(server, "Say hi.")

        run = run_cn(cn, tmp_path, server, prompt, config, env={"GENESYS_API_KEY": API_KEY})
        assert run.returncode == 0, run.describe()
        turns = interactions_for(server, prompt)
        assert turns and all(t.status == "completed" for t in turns), run.describe()
        assert turns[-1].answer.strip() in run.stdout, run.describe()
