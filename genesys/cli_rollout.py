"""``genesys rollout status|start|approve|reject|hold|resume|rollback``: operators steer a rollout from
the shell. The commands talk to a running server (``--server``), which applies each step at once; a
key with the operator role goes in ``--api-key`` or ``GENESYS_API_KEY``. Any error is one line on
stderr and exit code 2."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

import typer

from genesys.cli import app, fail, readable_errors

rollout_app = typer.Typer(help="See and steer the rollout of an adapter (A/B test, stages, rollback).")
app.add_typer(rollout_app, name="rollout", no_args_is_help=True)

DEFAULT_SERVER = "http://127.0.0.1:8000"
ServerOpt = Annotated[str, typer.Option("--server", help="The Genesys server.")]
ApiKeyOpt = Annotated[
    str | None,
    typer.Option(
        "--api-key", envvar="GENESYS_API_KEY", help="A key with the operator role.", show_default=False
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the server's JSON answer.")]
ReasonOpt = Annotated[str | None, typer.Option("--reason", "-r", help="Why; kept in the audit trail.")]
TIMEOUT_S = 120.0


def _call(
    server: str, api_key: str | None, method: str, path: str, body: dict[str, Any] | None = None
) -> Any:
    """The server's JSON answer; any failure is one readable line and exit code 2."""
    import httpx

    url = f"{server.rstrip('/')}{path}"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = httpx.request(method, url, json=body, headers=headers, timeout=TIMEOUT_S, trust_env=False)
    except httpx.HTTPError as exc:
        fail(f"cannot reach the Genesys server at {server} ({exc}); is `genesys serve` running?")
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if response.status_code >= 400:
        message = None
        if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
            message = payload["error"].get("message")
        fail(f"{response.status_code}: {message or response.text.strip()[:300] or response.reason_phrase}")
    if payload is None:
        fail(f"the server at {server} did not answer JSON (status {response.status_code})")
    return payload


def _when(value: str | None) -> str:
    if not value:
        return "-"
    return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M:%S UTC")


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _print_status(status: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(status, indent=2))
        return
    typer.echo(status["summary"])
    backup = status.get("backup") or "none"
    typer.echo(f"production: {status['production']}   backup: {backup}")
    rollout = status.get("rollout")
    if rollout is None:
        return
    stages = " -> ".join(f"{share:.0%}" for share in rollout["stages"])
    typer.echo(
        f"rollout {rollout['id']}: {rollout['candidate']} vs {rollout['baseline']}, {rollout['state']}, "
        f"traffic {rollout['traffic']:.0%}, stages {stages}, approval {rollout['approval']}"
    )
    if status.get("stage_ends_at"):
        typer.echo(
            f"stage ends {_when(status['stage_ends_at'])}; test ends {_when(status.get('test_ends_at'))}"
        )
    evaluation = status.get("evaluation")
    if evaluation:
        typer.echo(f"A/B: {evaluation['action']} ({evaluation['finding']}): {evaluation['reasons'][0]}")
        for arm in (evaluation["production"], evaluation["candidate"]):
            typer.echo(
                f"  {arm['arm']:<10} {arm['model_version']:<16} satisfaction {_pct(arm['satisfaction'])} "
                f"({arm['judged']} judged)  requests {arm['requests']}  errors {_pct(arm['error_rate'])}  "
                f"corrections {_pct(arm['correction_rate'])}"
            )
    for event in status.get("events", []):
        typer.echo(
            f"  {_when(event['at'])}  {event['action']:<8} "
            f"{event['from_state'] or '-'} -> {event['to_state']}  {event['traffic']:.0%}  "
            f"by {event['actor']}: {event['reason']}"
        )


def _step(action: str, server: str, api_key: str | None, reason: str | None, as_json: bool) -> None:
    body = {"reason": reason} if reason else None
    _print_status(_call(server, api_key, "POST", f"/v1/rollout/{action}", body), as_json)


@rollout_app.command("status")
@readable_errors
def status_command(
    server: ServerOpt = DEFAULT_SERVER, api_key: ApiKeyOpt = None, as_json: JsonOpt = False
) -> None:
    """Production, the backup, the current (or last) rollout, its arms and its audit trail."""
    _print_status(_call(server, api_key, "GET", "/v1/rollout"), as_json)


@rollout_app.command("start")
@readable_errors
def start_command(
    candidate: Annotated[str, typer.Argument(help="A validated adapter version.")],
    server: ServerOpt = DEFAULT_SERVER,
    api_key: ApiKeyOpt = None,
    reason: ReasonOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Roll a validated adapter out: A/B test on ab_traffic of users, then the stages."""
    body: dict[str, Any] = {"candidate": candidate}
    if reason:
        body["reason"] = reason
    _print_status(_call(server, api_key, "POST", "/v1/rollout/start", body), as_json)


@rollout_app.command("approve")
@readable_errors
def approve_command(
    server: ServerOpt = DEFAULT_SERVER,
    api_key: ApiKeyOpt = None,
    reason: ReasonOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Let the rollout waiting for approval start."""
    _step("approve", server, api_key, reason, as_json)


@rollout_app.command("reject")
@readable_errors
def reject_command(
    server: ServerOpt = DEFAULT_SERVER,
    api_key: ApiKeyOpt = None,
    reason: ReasonOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Refuse the rollout waiting for approval; its adapter becomes rejected."""
    _step("reject", server, api_key, reason, as_json)


@rollout_app.command("hold")
@readable_errors
def hold_command(
    server: ServerOpt = DEFAULT_SERVER,
    api_key: ApiKeyOpt = None,
    reason: ReasonOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Stop the running rollout from advancing; its traffic stays."""
    _step("hold", server, api_key, reason, as_json)


@rollout_app.command("resume")
@readable_errors
def resume_command(
    server: ServerOpt = DEFAULT_SERVER,
    api_key: ApiKeyOpt = None,
    reason: ReasonOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Let a held rollout advance again."""
    _step("resume", server, api_key, reason, as_json)


@rollout_app.command("rollback")
@readable_errors
def rollback_command(
    server: ServerOpt = DEFAULT_SERVER,
    api_key: ApiKeyOpt = None,
    reason: ReasonOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Roll back the rollout in progress, or, with none, production to its backup."""
    _step("rollback", server, api_key, reason, as_json)
