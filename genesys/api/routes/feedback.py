"""``POST /v1/feedback``: a user's thumbs, rating, correction, fix_worked or comment on one answer."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from genesys.api.deps import ServicesDep, UserCaller
from genesys.runtime.store import Feedback
from genesys.tools.feedback import FeedbackCreate, give_feedback

router = APIRouter(tags=["feedback"])


@router.post("/v1/feedback", response_model=Feedback)
async def post_feedback(body: FeedbackCreate, services: ServicesDep, _: UserCaller) -> Feedback:
    """The stored feedback; sending it again for the same answer updates it. 404 for an unknown id."""
    return await asyncio.to_thread(give_feedback, services.store, body)
