"""``GenesysClient``: the Genesys server from Python (a notebook, a script), over its HTTP API."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import httpx
from pydantic import BaseModel

from genesys import __version__
from genesys.client._chat import CONVERSATION_HEADER, ChatStream, chat_result
from genesys.client._errors import (
    GenesysAPIError,
    UnavailableError,
    WaitTimeout,
    error_from_response,
    error_from_transport,
)
from genesys.client._models import (
    Alert,
    Analysis,
    ChatResult,
    Cycle,
    CycleDetail,
    CycleList,
    CycleMessage,
    Feedback,
    Health,
    InteractionDetail,
    KpiReport,
    LearningSetup,
    ModelInfo,
    Readiness,
    RolloutStatus,
)

if TYPE_CHECKING:
    from genesys.client._setup import TrainingSystemStatus

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_MODEL = "genesys-local"
URL_ENV = "GENESYS_URL"
API_KEY_ENV = "GENESYS_API_KEY"

M = TypeVar("M", bound=BaseModel)
Messages = str | Sequence[Mapping[str, Any]]
InteractionRef = str | ChatResult | ChatStream


def _root_url(url: str) -> str:
    """``http://host:8000`` from ``http://host:8000``, ``.../`` or ``.../v1``."""
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"base_url must start with http:// or https://, got {url!r}")
    return url.removesuffix("/v1")


def _interaction_id(ref: InteractionRef) -> str:
    if isinstance(ref, str):
        return ref
    return ref.interaction_id


def _messages(messages: Messages) -> list[dict[str, Any]]:
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    return [dict(m) for m in messages]


class GenesysClient:
    """A Genesys server, from Python.

    ``base_url`` (default: ``$GENESYS_URL``, else ``http://127.0.0.1:8000``; a trailing ``/v1`` is
    fine) and ``api_key`` (default: ``$GENESYS_API_KEY``; none is needed by a server without keys).
    Chat, feedback and interactions need a ``user`` key; analysis, KPIs, alerts, cycles and rollouts
    an ``operator`` (or ``admin``) key. Every method raises a ``GenesysAPIError`` subclass when the
    server refuses or cannot be reached (see ``genesys.client``); its ``hint`` says what to do.

    Use it as a context manager, or call ``close()``. Not safe to share between threads while a stream
    is open.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        model: str = DEFAULT_MODEL,
        user: str | None = None,
        timeout: float = 300.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = _root_url(base_url or os.environ.get(URL_ENV) or DEFAULT_URL)
        self.model = model
        self.user = user
        key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
        headers = {"user-agent": f"genesys-client/{__version__}"}
        if key:
            headers["authorization"] = f"Bearer {key}"
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=10.0),
            transport=transport,
        )

    @property
    def api_base(self) -> str:
        """The OpenAI-compatible base URL (``<base_url>/v1``), e.g. for ``openai.OpenAI(base_url=...)``."""
        return f"{self.base_url}/v1"

    def __repr__(self) -> str:
        return f"GenesysClient({self.base_url!r}, model={self.model!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> GenesysClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- transport ---------------------------------------------------------------------------------

    def _send(self, request: httpx.Request, *, stream: bool = False) -> httpx.Response:
        try:
            response = self._http.send(request, stream=stream)
        except httpx.TransportError as exc:
            raise error_from_transport(exc, self.base_url) from exc
        if response.status_code >= 400:
            if stream:
                response.read()
                response.close()
            raise error_from_response(response)
        return response

    def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        request = self._http.build_request(method, path, json=json, params=params, headers=headers)
        return self._send(request)

    def _get(self, path: str, model: type[M], **params: Any) -> M:
        response = self._request("GET", path, params={k: v for k, v in params.items() if v is not None})
        return model.model_validate(response.json())

    def _post(self, path: str, model: type[M], body: Mapping[str, Any] | None = None) -> M:
        response = self._request("POST", path, json=dict(body) if body is not None else None)
        return model.model_validate(response.json())

    # -- health ------------------------------------------------------------------------------------

    def health(self) -> Health:
        """``GET /healthz``: the server process answers (the model may still be loading)."""
        return self._get("/healthz", Health)

    def readiness(self) -> Readiness:
        """``GET /readyz``: whether the model is loaded and the store reachable. A server that is not
        ready yet (503 with its report) is not an error here: look at ``.ready`` and ``.checks``."""
        try:
            response = self._http.get("/readyz")
        except httpx.TransportError as exc:
            raise error_from_transport(exc, self.base_url) from exc
        if response.status_code in (200, 503):
            try:
                return Readiness.model_validate(response.json())
            except ValueError:  # not Genesys' report (a proxy's page): an error below
                pass
        raise error_from_response(response)

    def wait_until_ready(self, timeout: float = 120.0, *, poll_seconds: float = 0.5) -> Readiness:
        """Wait until ``/readyz`` says ready (a server still starting up may refuse connections
        meanwhile); ``WaitTimeout`` after ``timeout`` seconds, with the last readiness or error."""
        deadline = time.monotonic() + timeout
        last: Readiness | GenesysAPIError | None = None
        while True:
            try:
                last = self.readiness()
                if last.ready:
                    return last
            except UnavailableError as exc:
                last = exc
            if time.monotonic() >= deadline:
                raise WaitTimeout(
                    f"the server at {self.base_url} was not ready after {timeout:g} s: {last}", last=last
                )
            time.sleep(poll_seconds)

    def models(self) -> list[ModelInfo]:
        """``GET /v1/models``: the routed model name and each servable version (``name@version``)."""
        response = self._request("GET", "/v1/models")
        return [ModelInfo.model_validate(m) for m in response.json()["data"]]

    def metrics(self) -> str:
        """``GET /metrics``: the Prometheus exposition text."""
        return self._request("GET", "/metrics").text

    # -- chat --------------------------------------------------------------------------------------

    def _chat_request(
        self,
        messages: Messages,
        *,
        stream: bool,
        model: str | None,
        max_tokens: int | None,
        temperature: float | None,
        conversation_id: str | None,
        user: str | None,
        tools: Sequence[Mapping[str, Any]] | None,
        params: Mapping[str, Any],
    ) -> httpx.Request:
        body: dict[str, Any] = {
            "model": model or self.model,
            "messages": _messages(messages),
            "stream": stream,
            **params,
        }
        optional = {"max_tokens": max_tokens, "temperature": temperature, "user": user or self.user}
        body.update({k: v for k, v in optional.items() if v is not None})
        if tools is not None:
            body["tools"] = [dict(t) for t in tools]
        if stream:
            body.setdefault("stream_options", {"include_usage": True})
        headers = {CONVERSATION_HEADER: conversation_id} if conversation_id else None
        return self._http.build_request("POST", "/v1/chat/completions", json=body, headers=headers)

    def chat(
        self,
        messages: Messages,
        *,
        model: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        conversation_id: str | None = None,
        user: str | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        **params: Any,
    ) -> ChatResult:
        """Ask the assistant; returns the whole answer with its ``interaction_id`` (for feedback) and
        ``model_version``. ``messages``: a question, or OpenAI chat messages. ``conversation_id``
        (a previous ``ChatResult.conversation_id``) groups turns; other OpenAI parameters (``seed``,
        ``top_p``, ``stop``, ...) pass through ``params``."""
        request = self._chat_request(
            messages,
            stream=False,
            model=model,
            max_tokens=max_tokens,
            temperature=temperature,
            conversation_id=conversation_id,
            user=user,
            tools=tools,
            params=params,
        )
        return chat_result(self._send(request))

    def chat_stream(
        self,
        messages: Messages,
        *,
        model: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        conversation_id: str | None = None,
        user: str | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        **params: Any,
    ) -> ChatStream:
        """Ask the assistant and read the answer as it is generated::

            with client.chat_stream("What does zip() do?") as stream:
                for text in stream:
                    print(text, end="")
            answer = stream.result          # ChatResult, as chat() returns it

        Errors before the first token raise here; errors mid-answer raise while iterating."""
        request = self._chat_request(
            messages,
            stream=True,
            model=model,
            max_tokens=max_tokens,
            temperature=temperature,
            conversation_id=conversation_id,
            user=user,
            tools=tools,
            params=params,
        )
        return ChatStream(self._send(request, stream=True), base_url=self.base_url)

    # -- feedback ----------------------------------------------------------------------------------

    def feedback(
        self,
        interaction: InteractionRef,
        *,
        thumbs: Literal["up", "down"] | None = None,
        rating: int | None = None,
        correction: str | None = None,
        fix_worked: bool | None = None,
        comment: str | None = None,
    ) -> Feedback:
        """``POST /v1/feedback`` on one answer (a ``ChatResult``, ``ChatStream`` or interaction id);
        give at least one field. Sending it again for the same answer updates it."""
        fields = {
            "thumbs": thumbs,
            "rating": rating,
            "correction": correction,
            "fix_worked": fix_worked,
            "comment": comment,
        }
        body: dict[str, Any] = {"interaction_id": _interaction_id(interaction)}
        body |= {k: v for k, v in fields.items() if v is not None}
        return self._post("/v1/feedback", Feedback, body)

    def correct(
        self, interaction: InteractionRef, correction: str, *, comment: str | None = None
    ) -> Feedback:
        """Mark an answer wrong and give the right one (thumbs down + ``correction``): the data the
        society learns from."""
        return self.feedback(interaction, thumbs="down", correction=correction, comment=comment)

    def interaction(self, interaction: InteractionRef) -> InteractionDetail:
        """``GET /v1/interactions/{id}``: the stored exchange, its feedback and its IDE events."""
        return self._get(f"/v1/interactions/{_interaction_id(interaction)}", InteractionDetail)

    # -- analysis and monitoring (operator role) ---------------------------------------------------

    def analyze(self, *, datasets: int = 5) -> Analysis:
        """``GET /v1/analysis`` (``genesys analyze``): interactions by type, category and tier,
        satisfaction, corrections, knowledge gaps and the latest ``datasets`` dataset versions."""
        return self._get("/v1/analysis", Analysis, datasets=datasets)

    def kpis(self) -> KpiReport:
        """``GET /v1/kpis``: the seed's KPIs now, each with its target, window and status."""
        return self._get("/v1/kpis", KpiReport)

    def alerts(self, *, state: Literal["firing", "resolved", "all"] = "all", limit: int = 100) -> list[Alert]:
        """``GET /v1/alerts``: the monitoring alerts, newest first, with the actions they took."""
        response = self._request("GET", "/v1/alerts", params={"state": state, "limit": limit})
        return [Alert.model_validate(a) for a in response.json()["alerts"]]

    def learning(self) -> LearningSetup:
        """``GET /v1/learning``: how the learning loop is set up (agents, triggers, data pipeline)."""
        return self._get("/v1/learning", LearningSetup)

    # -- learning cycles (operator role) -----------------------------------------------------------

    def start_cycle(self, reason: str | None = None, *, force_curate: bool = False) -> Cycle:
        """``POST /v1/cycles``: start a learning cycle now, in the background; follow it with
        ``follow_cycle`` or ``wait_for_cycle``. ``ConflictError`` while another cycle runs."""
        body: dict[str, Any] = {"force_curate": force_curate}
        if reason is not None:
            body["reason"] = reason
        return self._post("/v1/cycles", Cycle, body)

    def cycles(self, *, limit: int = 20, offset: int = 0) -> CycleList:
        """``GET /v1/cycles``: the cycles, newest first."""
        return self._get("/v1/cycles", CycleList, limit=limit, offset=offset)

    def cycle(self, cycle: str | Cycle) -> CycleDetail:
        """``GET /v1/cycles/{id}``: one cycle and every message of it."""
        cycle_id = cycle if isinstance(cycle, str) else cycle.id
        return self._get(f"/v1/cycles/{cycle_id}", CycleDetail)

    def follow_cycle(
        self, cycle: str | Cycle, *, timeout: float = 3600.0, poll_seconds: float = 1.0
    ) -> Iterator[CycleMessage]:
        """Yield the cycle's messages (agents' reports, tool calls and results, notes) as they are
        stored, until it ends; ``WaitTimeout`` (``.last``: the cycle as last seen) after ``timeout``
        seconds. The finished cycle is then ``client.cycle(id)``."""
        cycle_id = cycle if isinstance(cycle, str) else cycle.id
        deadline = time.monotonic() + timeout
        seen = -1  # messages are numbered from 0
        while True:
            detail = self.cycle(cycle_id)
            for message in detail.messages:
                if message.seq > seen:
                    seen = message.seq
                    yield message
            if detail.finished:
                return
            if time.monotonic() >= deadline:
                raise WaitTimeout(
                    f"cycle {cycle_id} was still {detail.state} (step {detail.step}) after {timeout:g} s",
                    last=detail,
                )
            time.sleep(poll_seconds)

    def wait_for_cycle(
        self, cycle: str | Cycle, *, timeout: float = 3600.0, poll_seconds: float = 1.0
    ) -> CycleDetail:
        """Wait until the cycle ends; returns it with its outcome and messages."""
        cycle_id = cycle if isinstance(cycle, str) else cycle.id
        for _ in self.follow_cycle(cycle_id, timeout=timeout, poll_seconds=poll_seconds):
            pass
        return self.cycle(cycle_id)

    # -- rollouts (operator role) ------------------------------------------------------------------

    def rollout(self) -> RolloutStatus:
        """``GET /v1/rollout``: production, backup, the current (or last) rollout and its arms."""
        return self._get("/v1/rollout", RolloutStatus)

    def _rollout_action(self, action: str, reason: str | None) -> RolloutStatus:
        return self._post(f"/v1/rollout/{action}", RolloutStatus, {"reason": reason} if reason else None)

    def start_rollout(self, candidate: str, *, reason: str | None = None) -> RolloutStatus:
        """Roll a validated adapter version out (an A/B test, then stages, then promotion)."""
        body = {"candidate": candidate} | ({"reason": reason} if reason else {})
        return self._post("/v1/rollout/start", RolloutStatus, body)

    def approve_rollout(self, *, reason: str | None = None) -> RolloutStatus:
        """Start the rollout waiting for an operator's approval."""
        return self._rollout_action("approve", reason)

    def reject_rollout(self, *, reason: str | None = None) -> RolloutStatus:
        """Refuse the rollout waiting for approval (its adapter becomes rejected)."""
        return self._rollout_action("reject", reason)

    def hold_rollout(self, *, reason: str | None = None) -> RolloutStatus:
        """Stop the running rollout from advancing (its traffic stays)."""
        return self._rollout_action("hold", reason)

    def resume_rollout(self, *, reason: str | None = None) -> RolloutStatus:
        """Let a held rollout advance again."""
        return self._rollout_action("resume", reason)

    def rollback(self, *, reason: str | None = None) -> RolloutStatus:
        """End the rollout in progress; with none, put production back to its backup."""
        return self._rollout_action("rollback", reason)

    # -- the seed's notebook set-up ----------------------------------------------------------------

    def setup_training_system(self, *, wait_ready: float = 30.0) -> TrainingSystemStatus:
        """Check that the training system is ready to learn (see ``genesys.client.setup_training_system``)."""
        from genesys.client._setup import check_training_system

        return check_training_system(self, wait_ready=wait_ready)
