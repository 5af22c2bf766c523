"""A running Genesys server through its public HTTP API, as the simulated users of ``genesys simulate``
and ``genesys bench loop`` call it: the ``openai`` client for chat (as IDEs do), ``httpx`` for
feedback, cycles and the rollout. (Notebooks and scripts have the fuller SDK, ``genesys.client``.)

``HttpServerApi`` implements ``genesys.tools.simulation.ServerApi``. Errors: ``EngineUnavailable`` when
the server cannot be reached (or is not ready in time), ``AuthError`` for a missing, wrong or too weak
key, ``InvalidRequest`` for another 4xx, ``EngineError`` for a 5xx; each message names the server.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Literal, NoReturn

import httpx

from genesys.errors import AuthError, EngineError, EngineUnavailable, InvalidRequest
from genesys.tools.simulation import ChatAnswer

if TYPE_CHECKING:
    from openai import OpenAI

VERSION_HEADER = "x-genesys-model-version"
CONVERSATION_HEADER = "X-Genesys-Conversation-Id"


def _message(body: Any, fallback: str) -> str:
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
    return fallback


def _raise_for(status: int, message: str) -> NoReturn:
    if status in (401, 403):
        raise AuthError(message, forbidden=status == 403)
    if status >= 500:
        raise EngineError(message)
    raise InvalidRequest(message)


class HttpServerApi:
    """The server at ``server`` (``http://host:port``, with or without ``/v1``). Close it when done."""

    def __init__(
        self,
        server: str,
        *,
        api_key: str | None = None,
        model: str = "genesys-local",
        timeout_s: float = 300.0,
    ) -> None:
        base = server.rstrip("/")
        self.base_url = base[: -len("/v1")] if base.endswith("/v1") else base
        self.model = model
        self.api_key = api_key
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout_s, trust_env=False)
        self._timeout_s = timeout_s
        self._openai: OpenAI | None = None

    def close(self) -> None:
        self._http.close()
        if self._openai is not None:
            self._openai.close()

    def __enter__(self) -> HttpServerApi:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- plumbing ---------------------------------------------------------------------------------

    def _client(self) -> OpenAI:
        if self._openai is None:
            from openai import OpenAI

            self._openai = OpenAI(
                base_url=f"{self.base_url}/v1",
                api_key=self.api_key or "no-key",
                max_retries=0,
                timeout=self._timeout_s,
            )
        return self._openai

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            response = self._http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise EngineUnavailable(
                f"cannot reach the Genesys server at {self.base_url} ({exc}); is `genesys serve` running?"
            ) from exc
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if response.status_code >= 400:
            text = response.text.strip()[:300] or response.reason_phrase
            _raise_for(
                response.status_code, f"{method} {path}: {response.status_code}: {_message(payload, text)}"
            )
        if payload is None:
            raise EngineError(f"{method} {path}: the server at {self.base_url} did not answer JSON")
        return payload

    def wait_ready(self, timeout_s: float = 120.0, *, connect_grace_s: float = 5.0) -> None:
        """Wait for ``GET /readyz`` to answer 200 (the model loads for a while after the server
        starts). Raises ``EngineUnavailable`` when nothing listens for ``connect_grace_s``, or the
        server is not ready after ``timeout_s``."""
        started = time.monotonic()
        last = "no answer"
        while True:
            try:
                response = self._http.get("/readyz", timeout=5)
            except httpx.TransportError as exc:
                last = str(exc) or type(exc).__name__
                if time.monotonic() - started >= min(connect_grace_s, timeout_s):
                    raise EngineUnavailable(
                        f"cannot reach the Genesys server at {self.base_url} ({last}); "
                        "is `genesys serve` running?"
                    ) from exc
            else:
                if response.status_code == 200:
                    return
                last = f"{response.status_code} {_message(_json(response), response.text[:200])}"
            if time.monotonic() - started >= timeout_s:
                raise EngineUnavailable(
                    f"the Genesys server at {self.base_url} was not ready within {timeout_s:g} s ({last})"
                )
            time.sleep(0.25)

    # -- the API ----------------------------------------------------------------------------------

    def chat(self, prompt: str, *, user: str, conversation_id: str, max_tokens: int) -> ChatAnswer:
        """One question in its own conversation, answered greedily."""
        import openai

        try:
            raw = self._client().chat.completions.with_raw_response.create(
                model=self.model,
                messages=[{"role": "user", "content": prompt}],
                max_tokens=max_tokens,
                temperature=0.0,
                user=user,
                extra_headers={CONVERSATION_HEADER: conversation_id},
            )
        except openai.APIConnectionError as exc:
            raise EngineUnavailable(f"cannot reach the Genesys server at {self.base_url} ({exc})") from exc
        except openai.APIStatusError as exc:
            # openai keeps the inner {"message", ...} of an {"error": {...}} body.
            said = exc.body.get("message") if isinstance(exc.body, dict) else None
            _raise_for(exc.status_code, f"chat: {exc.status_code}: {said or exc.message}")
        completion = raw.parse()
        return ChatAnswer(
            interaction_id=completion.id,
            text=completion.choices[0].message.content or "",
            model_version=raw.headers.get(VERSION_HEADER),
        )

    def feedback(self, interaction_id: str, *, thumbs: Literal["up", "down"], correction: str | None) -> None:
        body: dict[str, Any] = {"interaction_id": interaction_id, "thumbs": thumbs}
        if correction:
            body["correction"] = correction
        self._request("POST", "/v1/feedback", body)

    def cycles(self) -> list[dict[str, Any]]:
        """The latest cycles, newest first (needs the operator role when the server has keys)."""
        data = self._request("GET", "/v1/cycles?limit=20").get("data", [])
        return list(data)

    def rollout(self) -> dict[str, Any]:
        """``GET /v1/rollout``: production, the current (or last) rollout and its events."""
        return dict(self._request("GET", "/v1/rollout"))

    def interaction(self, interaction_id: str) -> dict[str, Any]:
        return dict(self._request("GET", f"/v1/interactions/{interaction_id}"))


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
