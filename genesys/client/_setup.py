"""The seed's ``setup_training_system()`` for a notebook: is this Genesys ready to learn?

The seed's five steps become five checks of a running server, each a ``Check`` that says what was
found and, when it fails, what to do:

1. ``server``: it answers (``/healthz``) and is ready (``/readyz``: model loaded, store reachable);
2. ``agents``: the society runs in it, with all five agents and their prompts (``/v1/learning``);
3. ``data_pipeline``: interactions are stored and exported, and the Analyst has what it needs;
4. ``monitoring``: ``/metrics`` and ``/v1/kpis`` answer (and ``/v1/alerts``, where the server has it);
5. ``learning``: cycles start by themselves every ``trigger_threshold`` interactions.

Nothing is changed on the server: a check that fails says which setting or command fixes it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from genesys.client._errors import (
    AuthenticationError,
    GenesysAPIError,
    NotFoundError,
    PermissionDeniedError,
    WaitTimeout,
)
from genesys.client._models import GenesysModel, LearningSetup, Readiness

if TYPE_CHECKING:
    from genesys.client._client import GenesysClient

# The checks, in the order they are made and shown.
CHECKS = ("server", "agents", "data_pipeline", "monitoring", "learning")
AGENT_NAMES = ("analyst", "curator", "trainer", "validator", "deploy")


class Check(GenesysModel):
    """One part of the training system: whether it is ready, what was found, and how to fix it."""

    name: str = Field(description="server, agents, data_pipeline, monitoring or learning.")
    ok: bool
    detail: str = Field(description="What was found.")
    fix: str | None = Field(None, description="What to do when it is not ok.")


class TrainingSystemStatus(GenesysModel):
    """What ``setup_training_system()`` found. ``ok`` when every check passed; ``missing`` lists the
    checks that did not, each with its ``fix``. Shown as a table in a notebook."""

    server: str = Field(description="The server's base URL.")
    checks: list[Check]
    learning: LearningSetup | None = Field(None, description="The server's report, when it gave one.")

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    @property
    def missing(self) -> list[Check]:
        return [check for check in self.checks if not check.ok]

    def check(self, name: str) -> Check:
        for check in self.checks:
            if check.name == name:
                return check
        raise KeyError(f"no check {name!r}; there are: {', '.join(c.name for c in self.checks)}")

    def summary(self) -> str:
        """One line per check, then what to do."""
        verdict = "ready to learn" if self.ok else f"not ready: {', '.join(c.name for c in self.missing)}"
        lines = [f"Genesys training system at {self.server}: {verdict}"]
        lines += [f"  [{'ok' if c.ok else 'missing'}] {c.name}: {c.detail}" for c in self.checks]
        lines += [f"  to fix {c.name}: {c.fix}" for c in self.missing if c.fix]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def _repr_markdown_(self) -> str:
        verdict = (
            "**ready to learn**"
            if self.ok
            else "**not ready** — " + ", ".join(f"`{c.name}`" for c in self.missing)
        )
        rows = [
            f"| {'✅' if c.ok else '❌'} | {c.name} | {_cell(c.detail)} | {_cell(c.fix or '')} |"
            for c in self.checks
        ]
        return "\n".join(
            [
                f"Genesys training system at `{self.server}`: {verdict}",
                "",
                "| | check | found | to fix |",
                "| --- | --- | --- | --- |",
                *rows,
            ]
        )


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _refusal(exc: GenesysAPIError, what: str) -> tuple[str, str]:
    """detail and fix for an endpoint that refused us."""
    if isinstance(exc, PermissionDeniedError):
        return f"{what} needs an operator key: {exc.message}", (
            "Use a key with the operator or admin role (GenesysClient(api_key=...) or GENESYS_API_KEY)."
        )
    if isinstance(exc, AuthenticationError):
        return f"{what}: {exc.message}", exc.hint or "Give the client an API key."
    if isinstance(exc, NotFoundError):
        return f"this server does not serve {what}", "Upgrade the server to the version of this SDK."
    return f"{what} failed: {exc.message}", exc.hint or "See the server's log."


def _server_check(client: GenesysClient, wait_ready: float) -> tuple[Check, bool]:
    """The server check, and whether the server answered at all."""
    try:
        health = client.health()
    except GenesysAPIError as exc:
        return Check(name="server", ok=False, detail=exc.message, fix=exc.hint), exc.status is not None
    try:
        ready = client.wait_until_ready(wait_ready) if wait_ready > 0 else client.readiness()
    except WaitTimeout as exc:
        last = exc.last
        found = ", ".join(f"{k} {v}" for k, v in last.checks.items()) if isinstance(last, Readiness) else last
        detail = f"Genesys {health.version} answers but is not ready after {wait_ready:g} s ({found})"
        fix = "Wait for the model to load; if the engine check shows an error, fix model.* and restart."
        return Check(name="server", ok=False, detail=detail, fix=fix), True
    except GenesysAPIError as exc:
        return Check(name="server", ok=False, detail=exc.message, fix=exc.hint), True
    if not ready.ready:
        found = ", ".join(f"{k} {v}" for k, v in ready.checks.items())
        detail = f"Genesys {health.version} answers but is not ready ({found})"
        fix = "Wait (client.wait_until_ready(), or wait_ready=...); an engine error needs model.* fixed."
        return Check(name="server", ok=False, detail=detail, fix=fix), True
    detail = (
        f"Genesys {health.version} ready: engine {ready.engine}, production version {ready.model_version}"
    )
    return Check(name="server", ok=True, detail=detail), True


def _agents_check(setup: LearningSetup) -> Check:
    society = setup.society
    if not society.available:
        return Check(
            name="agents",
            ok=False,
            detail="this server does not run the society of agents",
            fix="Serve with `genesys serve`, which runs the society in the background.",
        )
    names = {agent.name for agent in society.agents}
    absent = [name for name in AGENT_NAMES if name not in names]
    no_prompt = [a.name for a in society.agents if a.prompt_version == "unavailable"]
    problems = []
    if absent:
        problems.append(f"agents missing: {', '.join(absent)}")
    if no_prompt:
        problems.append(f"no usable prompt for: {', '.join(no_prompt)}")
    if not society.running:
        problems.append("the society's worker is not running")
    where = (
        f"llm mode via {society.llm_server or 'the served engine'}"
        if society.mode == "llm"
        else "policy mode"
    )
    if problems:
        return Check(
            name="agents",
            ok=False,
            detail="; ".join(problems + society.warnings),
            fix="Fix prompts/<agent>.md (non-empty UTF-8 text) and restart `genesys serve`; its log says why "
            "the worker stopped.",
        )
    detail = f"{', '.join(AGENT_NAMES)} in {where}"
    if society.warnings:
        detail += f"; warnings: {'; '.join(society.warnings)}"
    return Check(name="agents", ok=True, detail=detail)


def _data_pipeline_check(setup: LearningSetup) -> Check:
    data = setup.data_pipeline
    problems = []
    if data.store != "ok":
        problems.append("the interaction store is unreachable")
    if not data.raw_export_ready:
        problems.append(f"the raw export directory {data.raw_export_dir} is missing")
    if not data.log_all_interactions:
        problems.append("data_collection.log_all_interactions is off")
    if problems:
        return Check(
            name="data_pipeline",
            ok=False,
            detail="; ".join(problems),
            fix="Check storage.database_url and data_dir (the server must be able to write there), set "
            "data_collection.log_all_interactions: true, and restart.",
        )
    return Check(
        name="data_pipeline",
        ok=True,
        detail=f"{data.interactions} interactions stored; categories {', '.join(data.tag_categories)}; "
        f"vectors in {data.vectors}; training needs {data.min_examples} usable examples",
    )


def _monitoring_check(client: GenesysClient) -> Check:
    try:
        client.metrics()
        kpis = client.kpis()
    except GenesysAPIError as exc:
        detail, fix = _refusal(exc, "monitoring (/metrics, /v1/kpis)")
        return Check(name="monitoring", ok=False, detail=detail, fix=fix)
    counts: dict[str, int] = {}
    for kpi in kpis.data:
        counts[kpi.status] = counts.get(kpi.status, 0) + 1
    detail = f"/metrics answers; {len(kpis.data)} KPIs ({', '.join(f'{n} {s}' for s, n in counts.items())})"
    try:
        firing = client.alerts(state="firing")
        detail += f"; {len(firing)} alerts firing"
    except NotFoundError:
        detail += "; this server has no /v1/alerts"
    except GenesysAPIError as exc:
        detail += f"; alerts unavailable: {exc.message}"
    return Check(name="monitoring", ok=True, detail=detail)


def _learning_check(setup: LearningSetup) -> Check:
    society, triggers = setup.society, setup.triggers
    if not (society.available and society.running):
        return Check(
            name="learning",
            ok=False,
            detail="no learning cycle can run: the society is not running",
            fix="See the agents check.",
        )
    progress = (
        f"{triggers.interactions_since_last_cycle} of {triggers.trigger_threshold} interactions since the "
        "last cycle"
    )
    if triggers.active_cycle:
        progress += f"; cycle {triggers.active_cycle} is running"
    if not triggers.automatic:
        return Check(
            name="learning",
            ok=False,
            detail=f"cycles start only on request (automatic triggers are off); {progress}",
            fix="Set autogen_agents.schedule: true (or GENESYS_AUTOGEN_AGENTS__SCHEDULE=true) and restart "
            "`genesys serve`; meanwhile client.start_cycle() starts one.",
        )
    return Check(
        name="learning",
        ok=True,
        detail=f"a cycle starts every {triggers.trigger_threshold} interactions; {progress}",
    )


def check_training_system(client: GenesysClient, *, wait_ready: float = 30.0) -> TrainingSystemStatus:
    """Run the five checks against ``client``'s server (see the module's docstring)."""
    server, reachable = _server_check(client, wait_ready)
    if not reachable:
        skipped = "not checked: the server cannot be reached"
        others = [Check(name=name, ok=False, detail=skipped) for name in CHECKS[1:]]
        return TrainingSystemStatus(server=client.base_url, checks=[server, *others])
    try:
        setup = client.learning()
    except GenesysAPIError as exc:
        detail, fix = _refusal(exc, "the learning set-up (/v1/learning)")
        unknown = {name: Check(name=name, ok=False, detail=detail, fix=fix) for name in CHECKS[1:]}
        unknown["monitoring"] = _monitoring_check(client)
        return TrainingSystemStatus(server=client.base_url, checks=[server, *unknown.values()])
    checks = [
        server,
        _agents_check(setup),
        _data_pipeline_check(setup),
        _monitoring_check(client),
        _learning_check(setup),
    ]
    return TrainingSystemStatus(server=client.base_url, checks=checks, learning=setup)


def setup_training_system(
    base_url: str | None = None, *, api_key: str | None = None, wait_ready: float = 30.0
) -> TrainingSystemStatus:
    """The seed's notebook entry point: check that the Genesys at ``base_url`` (default:
    ``$GENESYS_URL``, else ``http://127.0.0.1:8000``) is reachable and ready, that its agents and data
    pipeline are configured, that monitoring answers and that learning is on. Returns a
    ``TrainingSystemStatus``: ``.ok``, ``.missing`` (each with its ``fix``), ``.summary()``. Waits up to
    ``wait_ready`` seconds for a server that is still loading its model. Needs an operator key when
    the server has keys."""
    from genesys.client._client import GenesysClient

    with GenesysClient(base_url, api_key=api_key) as client:
        return client.setup_training_system(wait_ready=wait_ready)
