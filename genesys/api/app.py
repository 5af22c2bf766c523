"""The FastAPI application factory."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import structlog
from fastapi import FastAPI

from genesys import __version__
from genesys.agents.genesys import GenesysAssistant
from genesys.api.deps import Services
from genesys.api.errors import install_error_handlers
from genesys.api.middleware import BodySizeLimitMiddleware, RequestContextMiddleware
from genesys.api.routes import (
    alerts,
    analysis,
    chat,
    completions,
    continue_events,
    cycles,
    dashboard,
    feedback,
    health,
    interactions,
    kpis,
    learning,
    metrics,
    models,
    operator,
    rollout,
)
from genesys.errors import InvalidRequest
from genesys.runtime.ab_router import AbRouter
from genesys.runtime.adapter_scope import ScopedEngine
from genesys.runtime.alert_loop import AlertLoop
from genesys.runtime.engine_host import EngineHost
from genesys.runtime.engines import InferenceEngine, make_engine
from genesys.runtime.interaction_log import InteractionLog
from genesys.runtime.metrics import Metrics
from genesys.runtime.prompts import PromptLibrary
from genesys.runtime.raw_export import RawExporter
from genesys.runtime.rollout_controller import RolloutController
from genesys.runtime.serving_versions import load_serving_versions
from genesys.runtime.settings import Settings
from genesys.runtime.store import Store
from genesys.tools.docs_index import DocsRetriever
from genesys.tools.rollout import RolloutService

if TYPE_CHECKING:
    from genesys.agents.scheduler import CycleScheduler

log = structlog.get_logger(__name__)


def build_services(settings: Settings, *, engine: InferenceEngine | None = None) -> Services:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    host = EngineHost(engine or make_engine(settings))
    store = Store(settings.database_url)
    metrics = Metrics()
    metrics.watch_store(store)
    if isinstance(host.engine, ScopedEngine):
        host.engine.on_decision = metrics.observe_adapter_scope
    router = AbRouter()
    controller = RolloutController(
        host.engine,
        router,
        store,
        driver=RolloutService.from_settings(store, settings),
        tick_seconds=settings.deploy.tick_seconds,
        drain_seconds=settings.deploy.drain_seconds,
        metrics=metrics,
    )
    return Services(
        settings=settings,
        host=host,
        store=store,
        log=InteractionLog(store.interactions, RawExporter(settings.data_dir), metrics),
        router=router,
        assistant=GenesysAssistant(
            host,
            PromptLibrary(),
            context_window=settings.data_collection.context_window,
            docs=_docs_retriever(settings),
        ),
        started_at=int(time.time()),
        metrics=metrics,
        controller=controller,
        cycles=_society(settings, store, host, controller),
    )


def _society(
    settings: Settings, store: Store, host: EngineHost, controller: RolloutController
) -> CycleScheduler:
    """The society's scheduler: cycles run in a background thread, validate with the served engine and
    hand their rollouts to the controller at once."""
    from genesys.agents.cycles import CycleRunner
    from genesys.agents.scheduler import SOCIETY_LEASE, CycleScheduler
    from genesys.agents.society import model_clients
    from genesys.runtime.leadership import LeaderElection
    from genesys.tools.training.runs import RunManager

    def engine() -> InferenceEngine:
        host.wait_ready(timeout=600)
        host.ensure_ready()
        return host.engine

    agents = settings.autogen_agents
    runner = CycleRunner(
        settings,
        store,
        engine=engine,
        model_client=model_clients(settings, host),
        manager=RunManager(settings, store=store.training_runs),
        on_rollout=controller.apply,
    )
    # With the schedule on, replicas sharing the database elect one to run the society's background work.
    election = (
        LeaderElection(
            store.leases, name=SOCIETY_LEASE, holder=runner.owner, ttl_seconds=agents.lease_seconds
        )
        if agents.schedule
        else None
    )
    return CycleScheduler(
        runner,
        threshold=agents.data_analyst.trigger_threshold,
        poll_seconds=agents.poll_seconds,
        automatic=agents.schedule,
        election=election,
    )


def _serve_registered_versions(services: Services) -> None:
    """Load the registry's production (and canary) adapters and route to production, or to the split
    of a rollout in progress; the rollout controller then follows the rollouts."""
    if services.controller is not None:
        services.controller.start()
        return
    split = load_serving_versions(services.host.engine, services.store.adapters, services.store.rollouts)
    services.router.set_split(split)
    log.info("server.serving", production=split.production)


def _docs_retriever(settings: Settings) -> DocsRetriever | None:
    """The assistant's documentation retriever, warming up (Chroma, MiniLM) off the request path."""
    retriever = DocsRetriever.from_settings(settings)
    if retriever is not None:
        retriever.warm_up_in_background()
    return retriever


def _alert_loop(services: Services) -> AlertLoop | None:
    """The alert rules in the background (None when ``alerts.enabled`` is off): a performance drop
    retrains through the society's scheduler, a critical failure rolls back through the controller."""
    config = services.settings.alerts
    if not config.enabled:
        return None
    from genesys.tools.alerts import AlertEvaluator

    def retrain(reason: str) -> str:
        if services.cycles is None:
            raise InvalidRequest("this server runs no learning cycles")
        return services.cycles.trigger(trigger="alert", requested_by="alerts", reason=reason).id

    evaluator = AlertEvaluator(
        services.store,
        services.settings,
        retrain=retrain,
        after_rollback=services.controller.apply if services.controller is not None else None,
    )

    def evaluate() -> object:
        # Replicas on one database: the society's leader evaluates and acts, the others stand by.
        if services.cycles is not None and not services.cycles.leading:
            return None
        return evaluator.evaluate()

    return AlertLoop(evaluate, interval_seconds=config.evaluate_seconds)


def create_app(settings: Settings, *, services: Services | None = None) -> FastAPI:
    """The app; the engine loads in the background at start-up (``/readyz`` says when it is done)."""
    services = services or build_services(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services.host.start_loading(after_load=lambda: _serve_registered_versions(services))
        if services.cycles is not None:
            services.cycles.start()
        alert_loop = app.state.alert_loop = _alert_loop(services)
        if alert_loop is not None:
            alert_loop.start()
        log.info(
            "server.starting",
            engine=services.host.engine.kind,
            data_dir=str(settings.data_dir),
            auth="api keys" if settings.auth_enabled else "none (loopback only)",
        )
        yield
        if alert_loop is not None:
            alert_loop.stop()
        if services.cycles is not None:
            services.cycles.stop()
        if services.controller is not None:
            services.controller.stop()
        services.store.close()

    app = FastAPI(title="Genesys", version=__version__, lifespan=lifespan)
    app.state.services = services
    install_error_handlers(app)
    routers = (
        health,
        metrics,
        models,
        chat,
        completions,
        feedback,
        interactions,
        continue_events,
        rollout,
        cycles,
        kpis,
        alerts,
        analysis,
        learning,
        dashboard,
        operator,
    )
    for module in routers:
        app.include_router(module.router)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.server.max_body_bytes)
    app.add_middleware(RequestContextMiddleware, metrics=services.metrics)
    return app
