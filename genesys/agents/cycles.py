"""Running the society's learning cycles: one at a time, every message stored, resumable after a restart.

``CycleRunner.claim`` takes the one active-cycle slot in the store (``CycleInProgress`` when another
cycle holds it, in this process or any other); ``run`` then runs the society (``build_society``) on
that cycle:

- every message is stored as it comes (the task, each tool call and result, each agent's report);
- the team runs one agent turn at a time, and its state (autogen ``save_state``) is saved after each
  turn, so that a cycle interrupted by a shutdown or a crash resumes from the last finished turn (the
  Analyst and Curator are not asked again once they have reported; a Trainer whose run was under way
  follows that run);
- the prompt versions in use are recorded when the cycle starts (and noted when it resumes); a refused
  prompt file is noted with the reason, and its last good version is used;
- a heartbeat tells other processes the cycle is alive; a cycle whose process died (or went silent for
  ``autogen_agents.stale_after_seconds``) is ``resumable``.

The last report decides how the cycle ends (``genesys.agents.reports.outcome_of``): ``completed`` when
the Deploy agent started or queued a rollout, ``stopped`` with the reason of the agent that stopped it,
``failed`` when the machinery failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import structlog
from autogen_agentchat.base import TaskResult
from autogen_agentchat.messages import (
    BaseAgentEvent,
    BaseChatMessage,
    ModelClientStreamingChunkEvent,
    TextMessage,
)
from autogen_core import CancellationToken

from genesys.agents.reports import StepReport, outcome_of, report_of
from genesys.agents.roles import CycleContext, Toolbox
from genesys.agents.society import ModelClientFactory, build_society, model_clients, prompt_versions
from genesys.errors import GenesysError
from genesys.runtime.prompts import PromptLibrary
from genesys.runtime.store import Cycle, CycleInProgress, Store, utcnow
from genesys.runtime.store.cycles import CycleTrigger, MessageKind, new_cycle_id

if TYPE_CHECKING:
    from genesys.runtime.engines.base import InferenceEngine
    from genesys.runtime.settings import Settings
    from genesys.runtime.vectors import VectorStore
    from genesys.tools.training.config import TrainingConfig
    from genesys.tools.training.runs import RunManager

log = structlog.get_logger(__name__)

HEARTBEAT_SECONDS = 15.0
RUNNER = "runner"  # the source of the runner's own notes
_MAX_TEXT = 20_000


def this_process() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def owner_alive(owner: str | None) -> bool | None:
    """Whether the process ``host:pid`` lives; None when it is on another host (only its heartbeat
    can tell)."""
    if not owner or ":" not in owner:
        return False
    host, _, pid_text = owner.rpartition(":")
    if host != socket.gethostname():
        return None
    try:
        pid = int(pid_text)
        os.kill(pid, 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not reaped yet) runs nothing
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def task_text(cycle: Cycle) -> str:
    force = (
        " Curate a new dataset version even if nothing changed." if cycle.options.get("force_curate") else ""
    )
    return (
        f"Learning cycle {cycle.id} ({cycle.trigger}, requested by {cycle.requested_by}: {cycle.reason}). "
        "Decide whether Genesys should learn from its recent interactions; if so, curate a dataset, train "
        f"a candidate adapter, validate it against production and roll it out.{force}"
    )


class CycleRunner:
    """Runs the society's cycles over one store, one at a time. ``run`` blocks (it runs its own event
    loop); call it from a worker thread in a server (``genesys.agents.scheduler``)."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        engine: InferenceEngine | Callable[[], InferenceEngine] | None = None,
        toolbox: Toolbox | None = None,
        prompts: PromptLibrary | None = None,
        model_client: ModelClientFactory | None = None,
        manager: RunManager | None = None,
        vectors: VectorStore | None = None,
        training_config: TrainingConfig | None = None,
        humaneval: bool = True,
        on_rollout: Callable[[], object] | None = None,
        owner: str | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.engine = engine
        self.toolbox = toolbox or Toolbox()
        # One library for the runner's life: a refused file falls back to the last good text it read.
        self.prompts = prompts or PromptLibrary()
        self.model_client = model_client
        self.manager = manager
        self.vectors = vectors
        self.training_config = training_config
        self.humaneval = humaneval
        self.on_rollout = on_rollout
        self.owner = owner or this_process()
        self._lock = threading.Lock()
        self._token: CancellationToken | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = threading.Event()
        # Cycles this runner claimed and has not started yet: not orphans, whatever their heartbeat.
        self._claimed: set[str] = set()
        # Owners known to be gone (a replica whose society lease expired): their cycles are orphans.
        self.departed: set[str] = set()

    @property
    def busy(self) -> bool:
        """This runner is running a cycle now."""
        return self._lock.locked()

    # -- claiming and finding cycles --------------------------------------------------------------

    def claim(
        self,
        *,
        trigger: CycleTrigger,
        requested_by: str,
        reason: str,
        force_curate: bool = False,
    ) -> Cycle:
        """Take the active-cycle slot for a new cycle (run it with ``run``).

        Raises ``CycleInProgress`` while another cycle is active.
        """
        if self._stopping.is_set():
            raise CycleInProgress("the server is shutting down; no cycle starts now")
        now = utcnow()
        previous = self.store.cycles.latest()
        cycle = Cycle(
            id=new_cycle_id(now),
            trigger=trigger,
            requested_by=requested_by,
            reason=reason,
            mode=self.settings.autogen_agents.mode,
            state="running",
            options={
                "force_curate": force_curate,
                "previous_cycle_at": previous.created_at.isoformat() if previous else None,
            },
            owner=self.owner,
            interactions_at_start=self.store.interactions.count(),
            created_at=now,
            heartbeat_at=now,
        )
        claimed = self.store.cycles.claim(cycle)
        self._claimed.add(claimed.id)
        log.info("cycle.claimed", cycle=claimed.id, trigger=trigger, requested_by=requested_by)
        return claimed

    def resumable(self) -> Cycle | None:
        """The active cycle, when nobody runs it any more: interrupted at a shutdown, or its process
        died (or went silent for ``stale_after_seconds``)."""
        active = self.store.cycles.active()
        if active is None or active.id in self._claimed or (active.owner == self.owner and self.busy):
            return None
        if active.state == "interrupted":
            return active
        stale = utcnow() - active.heartbeat_at > timedelta(
            seconds=self.settings.autogen_agents.stale_after_seconds
        )
        # An owner whose society lease expired is gone once its cycle's heartbeat has stopped too.
        departed = active.owner in self.departed and utcnow() - active.heartbeat_at > timedelta(
            seconds=2 * HEARTBEAT_SECONDS
        )
        alive = False if departed else owner_alive(active.owner)
        if stale or alive is False or (active.owner == self.owner and not self.busy):
            return active
        return None

    # -- running ----------------------------------------------------------------------------------

    def run_cycle(
        self,
        *,
        trigger: CycleTrigger = "operator",
        requested_by: str = "operator",
        reason: str = "requested",
        force_curate: bool = False,
    ) -> Cycle:
        """Claim a cycle and run it to its end (``genesys train``, tests); returns it as it ended."""
        cycle = self.claim(
            trigger=trigger, requested_by=requested_by, reason=reason, force_curate=force_curate
        )
        return self.run(cycle.id)

    def resume(self) -> Cycle | None:
        """Take over the resumable cycle, if any, and run it from its last saved turn to its end."""
        cycle = self.resumable()
        if cycle is None:
            return None
        if not self.store.cycles.take_over(cycle.id, owner=self.owner, expected_owner=cycle.owner):
            return None  # another process took it first
        log.info("cycle.resuming", cycle=cycle.id, previous_owner=cycle.owner, turns=cycle.turns)
        return self.run(cycle.id, resumed=True)

    def run(self, cycle_id: str, *, resumed: bool = False) -> Cycle:
        """Run a claimed (or taken-over) cycle to its end; returns it as it ended. Blocks."""
        return asyncio.run(self.arun(cycle_id, resumed=resumed))

    async def arun(self, cycle_id: str, *, resumed: bool = False) -> Cycle:
        """``run`` inside a running event loop. Raises ``CycleInProgress`` when this runner runs another."""
        if not self._lock.acquire(blocking=False):
            raise CycleInProgress("this process is running a cycle already")
        heartbeat: asyncio.Task[None] | None = None
        try:
            self._claimed.discard(cycle_id)
            self._loop = asyncio.get_running_loop()
            cycle = self.store.cycles.get(cycle_id)
            if not cycle.active:  # ended already (by another process that resumed it)
                return cycle
            heartbeat = asyncio.create_task(self._heartbeat(cycle_id))
            return await self._run(cycle, resumed=resumed)
        finally:
            if heartbeat is not None:
                heartbeat.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await heartbeat
            self._token = None
            self._loop = None
            self._lock.release()

    def stop(self) -> None:
        """Stop the cycle running now, leaving it ``interrupted`` at its last saved turn, and refuse new
        ones; the training run it waits for is cancelled (a resumed cycle trains again)."""
        self._stopping.set()
        token, loop = self._token, self._loop
        if token is not None and loop is not None:
            # The cycle's loop runs in another thread: its futures are cancelled from that thread.
            with contextlib.suppress(RuntimeError):  # the loop has just closed
                loop.call_soon_threadsafe(token.cancel)
        if self.manager is not None:
            self.manager.close(grace_s=5)

    async def _run(self, cycle: Cycle, *, resumed: bool) -> Cycle:
        cycle_id = cycle.id
        versions, warnings = prompt_versions(self.prompts)
        for warning in warnings:
            log.error("cycle.prompt_refused", cycle=cycle_id, warning=warning)
            self._note(cycle_id, "PromptRefused", warning)
        if resumed:
            self._note(
                cycle_id,
                "CycleResumed",
                f"resumed by {self.owner} after {cycle.turns} saved turns (last step: "
                f"{cycle.step or 'none'}); the reports already sent stand; prompt versions now: {versions}",
            )
            self.store.cycles.update(cycle_id, warnings=[*cycle.warnings, *warnings])
        else:
            self.store.cycles.update(cycle_id, prompt_versions=versions, warnings=warnings)
        try:
            ctx = self._context(cycle)
            clients = self._model_clients(ctx) if cycle.mode == "llm" else None
            society = build_society(ctx, mode=cycle.mode, prompts=self.prompts, model_client=clients)
        except (GenesysError, RuntimeError) as exc:
            return self._fail(cycle_id, f"the society could not be built: {exc}")
        team = society.team
        saved = self.store.cycles.team_state(cycle_id)
        task: TextMessage | None = None
        if saved is not None:
            await team.load_state(saved)
        else:  # a new cycle, or one that crashed before its first turn ended
            task = TextMessage(
                content=task_text(cycle), source="scheduler" if cycle.trigger == "threshold" else "operator"
            )
        token = CancellationToken()
        self._token = token
        if self._stopping.is_set():
            token.cancel()
        turns = cycle.turns
        last: StepReport | None = None
        try:
            while True:
                async for item in team.run_stream(task=task, cancellation_token=token):
                    if isinstance(item, TaskResult | ModelClientStreamingChunkEvent):
                        continue
                    report = self._store(cycle_id, item)
                    last = report or last
                task = None
                turns += 1
                state = dict(await team.save_state())
                if last is None or not last.proceed or last.step == "deploy":
                    return self._finish(cycle_id, last, state, turns)
                self.store.cycles.save_turn(cycle_id, team_state=state, turns=turns)
        except (asyncio.CancelledError, KeyboardInterrupt):
            return self._interrupted(cycle_id, turns)
        except Exception as exc:
            if token.is_cancelled():  # the team surfaces a cancelled turn as its own error
                return self._interrupted(cycle_id, turns)
            log.exception("cycle.failed", cycle=cycle_id)
            return self._fail(cycle_id, f"{type(exc).__name__}: {exc}")

    def _interrupted(self, cycle_id: str, turns: int) -> Cycle:
        log.warning("cycle.interrupted", cycle=cycle_id, turns=turns)
        self.store.cycles.update(cycle_id, state="interrupted")
        self._note(
            cycle_id,
            "CycleInterrupted",
            f"stopped by {self.owner} after {turns} finished turns; it resumes from there at the next start",
        )
        return self.store.cycles.get(cycle_id)

    def _context(self, cycle: Cycle) -> CycleContext:
        from datetime import datetime

        previous = cycle.options.get("previous_cycle_at")
        cycle_id = cycle.id

        def progress(step: str, details: dict[str, Any]) -> None:
            self.store.cycles.update(cycle_id, progress={"step": step, "at": utcnow().isoformat(), **details})

        return CycleContext(
            settings=self.settings,
            store=self.store,
            cycle_id=cycle_id,
            toolbox=self.toolbox,
            engine=self.engine,
            vectors=self.vectors,
            manager=self.manager,
            training_config=self.training_config,
            humaneval=self.humaneval,
            force_curate=bool(cycle.options.get("force_curate")),
            previous_cycle_at=datetime.fromisoformat(previous) if previous else None,
            on_rollout=self.on_rollout,
            progress=progress,
        )

    def _model_clients(self, ctx: CycleContext) -> ModelClientFactory:
        """The given factory, else llm mode's own: the runner's engine for the served model, the
        ``autogen_agents.llm`` server for the others."""
        if self.model_client is not None:
            return self.model_client
        from genesys.runtime.engine_host import EngineHost

        host = EngineHost(ctx.get_engine()) if self.engine is not None else None
        return model_clients(self.settings, host)

    def _store(self, cycle_id: str, item: BaseAgentEvent | BaseChatMessage) -> StepReport | None:
        kind: MessageKind = "chat" if isinstance(item, BaseChatMessage) else "event"
        self.store.cycles.add_message(
            cycle_id,
            source=item.source,
            type=type(item).__name__,
            kind=kind,
            text=item.to_text()[:_MAX_TEXT],
            payload=dict(item.dump()),
        )
        report = report_of(item) if isinstance(item, BaseChatMessage) else None
        if report is not None:
            self.store.cycles.update(cycle_id, step=item.source)
            log.info(
                "cycle.report",
                cycle=cycle_id,
                agent=item.source,
                proceed=report.proceed,
                reason=report.reason,
            )
        elif kind == "event":
            self.store.cycles.update(cycle_id, step=item.source)
        return report

    def _note(self, cycle_id: str, type_: str, text: str) -> None:
        payload = {"type": type_, "source": RUNNER, "content": text, "at": utcnow().isoformat()}
        self.store.cycles.add_message(
            cycle_id, source=RUNNER, type=type_, kind="note", text=text, payload=payload
        )

    def _finish(self, cycle_id: str, last: StepReport | None, state: dict[str, Any], turns: int) -> Cycle:
        if last is None:
            return self._fail(cycle_id, "the society ended without a report")
        end, outcome = outcome_of(last)
        cycle = self.store.cycles.finish(
            cycle_id, state=end, outcome=outcome, reason=last.reason, team_state=state, turns=turns
        )
        log.info("cycle.ended", cycle=cycle_id, state=end, outcome=outcome, reason=last.reason)
        return cycle

    def _fail(self, cycle_id: str, reason: str) -> Cycle:
        self._note(cycle_id, "CycleFailed", reason)
        return self.store.cycles.finish(cycle_id, state="failed", outcome="error", reason=reason)

    async def _heartbeat(self, cycle_id: str) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            try:
                self.store.cycles.update(cycle_id)
            except Exception as exc:  # a missed heartbeat only makes the cycle look stale sooner
                log.warning("cycle.heartbeat_failed", cycle=cycle_id, error=str(exc))
