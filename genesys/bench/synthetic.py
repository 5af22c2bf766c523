"""Synthetic interactions for benchmarks: varied coding questions and answers, some with feedback.

The mix resembles an IDE's log: mostly short questions, about a fifth with a pasted snippet or a
traceback, some follow-ups; answers with code, a few cut at ``max_tokens``, empty or looping; about
a third with feedback of every kind (explicit thumbs, ratings and corrections, Continue events,
implicit corrections and regenerates, fixes that worked or not). Deterministic for a given seed.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from genesys.runtime.interaction_type import classify_interaction
from genesys.runtime.store import Feedback, Interaction, Status

TECHS = (
    "Vue 3", "React", "pandas", "FastAPI", "Docker", "PostgreSQL", "Django", "TypeScript", "Node.js",
    "Rust", "Kubernetes", "Go", "Flask", "SQLAlchemy", "Next.js", "Spring Boot", "Redis", "numpy",
    "PyTorch", "Svelte", "Angular", "Kafka", "Terraform", "GraphQL",
)  # fmt: skip
THINGS = (
    "component", "endpoint", "query", "service", "script", "function", "class", "pipeline",
    "worker", "module", "form", "migration", "middleware", "hook", "job", "handler",
)  # fmt: skip
ACTIONS = (
    "parses a CSV upload", "paginates the results", "retries failed requests", "caches the user profile",
    "validates the form input", "streams a large log file", "sends a confirmation email",
    "exports a report to Excel", "deduplicates incoming events", "refreshes an expired token",
    "resizes uploaded images", "syncs two databases", "rate-limits API calls", "groups orders by month",
)  # fmt: skip
ERRORS = (
    "TypeError: Cannot read properties of undefined (reading 'map')", "KeyError: 'id'",
    "a 500 Internal Server Error", "exit code 137", "a timeout after 30 seconds",
    "ModuleNotFoundError: No module named 'app'", "a deadlock", "NaN values in every column",
    "CORS policy: No 'Access-Control-Allow-Origin' header", "a segmentation fault",
    "IntegrityError: duplicate key value violates unique constraint", "an infinite re-render loop",
)  # fmt: skip
CONCEPTS = (
    "dependency injection", "the event loop", "reactivity", "connection pooling", "async/await",
    "memoization", "database indexes", "generators", "closures", "middleware", "optimistic locking",
    "virtual DOM diffing", "garbage collection", "transactions", "lazy loading",
)  # fmt: skip

TEMPLATES: dict[str, tuple[str, ...]] = {
    "coding": (
        "Write a {tech} {thing} that {action}.",
        "How do I implement a {thing} in {tech} that {action}?",
        "Can you show me {tech} code for a {thing} that {action}?",
        "Create a {tech} {thing} which {action}, with type hints.",
    ),
    "debugging": (
        "My {tech} {thing} fails with {error} when it {action}. How do I fix it?",
        "Why do I get {error} in my {tech} {thing}?",
        "After upgrading {tech}, the {thing} that {action} crashes with {error}.",
        "{tech} {thing} not working: {error}",
    ),
    "explanation": (
        "Explain {concept} in {tech}, with an example.",
        "What is the difference between {concept} and {concept2} in {tech}?",
        "Why does {tech} use {concept}?",
        "What does {concept} mean in a {tech} {thing}?",
    ),
    "architecture": (
        "How should I structure a {tech} project with a {thing} that {action}?",
        "Monolith or microservices for a {tech} app whose {thing} {action}?",
        "What is a good design for a {tech} {thing} that {action} at scale?",
    ),
    "optimization": (
        "My {tech} {thing} that {action} is slow. How can I make it faster?",
        "How do I reduce the memory use of a {tech} {thing} that {action}?",
        "Speed up this {tech} {thing}: it {action} and takes minutes.",
    ),
    "testing": (
        "How do I write unit tests for a {tech} {thing} that {action}?",
        "How can I mock the {thing} in my {tech} tests?",
        "Write integration tests for a {tech} {thing} that {action}.",
    ),
}
FOLLOW_UPS = ("And in {tech}?", "What about {tech}?", "Can you make it async?", "Why?", "Shorter please.")
CORRECTIONS = (
    "In {tech} you should use the built-in API instead: the approach above is deprecated since the "
    "last major version. Use `{name}()` and handle the error explicitly.",
    "That is wrong for {tech}: `{name}` must be called inside the setup step, and the result is a "
    "reactive reference, so read `.value` in scripts.",
    "No, {tech} does not support that option any more; configure it in the settings file and "
    "restart the {thing}.",
)


@dataclass(frozen=True)
class SyntheticInteraction:
    interaction: Interaction
    feedback: list[Feedback]
    category: str


def _code(rng: random.Random, lines: int) -> str:
    body = [f"    value_{i} = compute_{rng.randint(0, 99)}(item, {i})" for i in range(lines)]
    return "def handle(item):\n" + "\n".join(body) + "\n    return value_0\n"


def _question(rng: random.Random, category: str) -> tuple[str, str]:
    tech = rng.choice(TECHS)
    concept, concept2 = rng.sample(CONCEPTS, 2)
    text = rng.choice(TEMPLATES[category]).format(
        tech=tech,
        thing=rng.choice(THINGS),
        action=rng.choice(ACTIONS),
        error=rng.choice(ERRORS),
        concept=concept,
        concept2=concept2,
    )
    roll = rng.random()
    if roll < 0.12:  # a pasted snippet
        text += f"\n\n```python\n{_code(rng, rng.randint(4, 20))}```"
    elif roll < 0.2:  # a pasted traceback
        frames = "".join(
            f'  File "/app/src/module_{i}.py", line {rng.randint(1, 400)}, in handler_{i}\n'
            for i in range(rng.randint(3, 12))
        )
        text += f"\n\nTraceback (most recent call last):\n{frames}{rng.choice(ERRORS)}"
    return text, tech


def _answer(rng: random.Random, tech: str) -> tuple[str, str, Status]:
    """(answer, finish_reason, status)."""
    roll = rng.random()
    if roll < 0.02:
        return "", "stop", "error"
    intro = f"Here is how to do it in {tech}. First, check the configuration, then update the handler."
    code = f"```python\n{_code(rng, rng.randint(3, 12))}```"
    if roll < 0.04:  # a small model looping
        return "\n".join([intro] * 12), "length", "completed"
    if roll < 0.09:
        return f"{intro}\n\n{code[: len(code) // 2]}", "length", "completed"
    outro = "This keeps the logic in one place and makes it easy to test."
    return f"{intro}\n\n{code}\n\n{outro}", "stop", "completed"


def _feedback(rng: random.Random, interaction_id: str, tech: str, category: str) -> list[Feedback]:
    roll = rng.random()
    correction = rng.choice(CORRECTIONS).format(
        tech=tech, name=rng.choice(("defineProps", "useQuery")), thing="app"
    )
    if roll < 0.12:
        rating = rng.choice((None, 4, 5))
        return [Feedback(interaction_id=interaction_id, thumbs="up", rating=rating)]
    if roll < 0.18:
        return [Feedback(interaction_id=interaction_id, thumbs="down", correction=correction)]
    if roll < 0.21:
        return [Feedback(interaction_id=interaction_id, rating=rng.choice((1, 2, 3)))]
    if roll < 0.25:
        return [
            Feedback(
                interaction_id=interaction_id,
                source="implicit",
                signal="correction",
                thumbs="down",
                correction=correction,
                evidence=correction,
            )
        ]
    if roll < 0.28:
        return [
            Feedback(
                interaction_id=interaction_id,
                source="implicit",
                signal="regenerate",
                thumbs="down",
                evidence="regenerated: the same 1 messages were sent again 4 s later",
            )
        ]
    if roll < 0.33:
        return [
            Feedback(
                interaction_id=interaction_id,
                source="continue",
                signal="chatFeedback",
                thumbs=rng.choice(("up", "down")),
            )
        ]
    if roll < 0.36 and category == "debugging":
        return [Feedback(interaction_id=interaction_id, fix_worked=rng.random() < 0.6)]
    return []


def synthetic_interactions(n: int, *, seed: int = 0, start: datetime) -> list[SyntheticInteraction]:
    """``n`` interactions created one second apart from ``start``, with their feedback."""
    rng = random.Random(seed)
    categories = list(TEMPLATES)
    out: list[SyntheticInteraction] = []
    for k in range(n):
        category = rng.choice(categories)
        question, tech = _question(rng, category)
        messages = [{"role": "user", "content": question}]
        if rng.random() < 0.1:  # a follow-up turn
            follow = rng.choice(FOLLOW_UPS).format(tech=rng.choice(TECHS))
            messages = [
                *messages,
                {"role": "assistant", "content": "Sure: ..."},
                {"role": "user", "content": follow},
            ]
        answer, finish, status = _answer(rng, tech)
        interaction_id = f"chatcmpl-{uuid.UUID(int=rng.getrandbits(128)).hex}"
        latency = rng.uniform(300, 4000)
        created_at = start + timedelta(seconds=k)
        interaction = Interaction(
            id=interaction_id,
            conversation_id=f"bench-{k // 3}",
            user=f"user-{k % 17}",
            request_messages=messages,
            answer=answer,
            model_version="base",
            latency_ms=latency,
            prompt_tokens=len(question) // 4,
            completion_tokens=len(answer) // 4,
            finish_reason=finish,
            status=status,
            error="engine failed" if status == "error" else None,
            interaction_type=classify_interaction(messages[-1]["content"]),
            created_at=created_at,
            completed_at=created_at + timedelta(milliseconds=latency),
        )
        out.append(
            SyntheticInteraction(interaction, _feedback(rng, interaction_id, tech, category), category)
        )
    return out
