"""Reads implicit feedback from each chat request, beside the answer and never in its way."""

from __future__ import annotations

import asyncio
import contextvars
import functools

import structlog

from genesys.api.deps import Services
from genesys.api.serving import Exchange
from genesys.tools.implicit_feedback import record_implicit_feedback

log = structlog.get_logger(__name__)


def _record(services: Services, exchange: Exchange) -> None:
    try:
        feedback = record_implicit_feedback(
            services.store,
            conversation_id=exchange.conversation_id,
            interaction_id=exchange.id,
            messages=exchange.messages,
            created_at=exchange.created_at,
        )
    except Exception as exc:  # a lost signal must never fail or slow the answer
        log.error("implicit_feedback.failed", interaction_id=exchange.id, error=str(exc))
        return
    if feedback is not None:
        log.info(
            "implicit_feedback.recorded",
            interaction_id=feedback.interaction_id,
            signal=feedback.signal,
            by_interaction_id=exchange.id,
        )


def watch_for_implicit_feedback(services: Services, exchange: Exchange) -> None:
    """Record, in a worker thread, what this request's messages say about the conversation's
    previous answer (see ``genesys.tools.implicit_feedback``); returns at once."""
    # The copied context keeps the request id on the log lines of the worker.
    job = functools.partial(contextvars.copy_context().run, _record, services, exchange)
    asyncio.get_running_loop().run_in_executor(None, job)
