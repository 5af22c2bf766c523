"""Implicit feedback through real chat requests: corrections, errors after a fix, regenerates.

The server reads each request beside its answer, in a worker thread, so the tests wait for the
feedback to appear.
"""

from __future__ import annotations

from typing import Any

from genesys.runtime.store import Feedback
from genesys.tools.implicit_feedback import classify_followup
from tests.conftest import LiveServer
from tests.support.chat import chat, wait_for


def implicit(server: LiveServer, interaction_id: str) -> list[Feedback]:
    return [
        f for f in server.services.store.feedback.for_interaction(interaction_id) if f.source == "implicit"
    ]


def wait_implicit(server: LiveServer, interaction_id: str) -> Feedback:
    (found,) = wait_for(
        lambda: implicit(server, interaction_id), what=f"implicit feedback on {interaction_id}"
    )
    return found


def test_a_correcting_reply_marks_the_previous_answer(live_server: LiveServer) -> None:
    question = [{"role": "user", "content": "How do I mount a Vue app?"}]
    first_id, answer = chat(live_server.api, question)
    correction_text = "No, in Vue 3 that's createApp(App).mount('#app'), not new Vue()."
    second_id, _ = chat(
        live_server.api,
        [*question, {"role": "assistant", "content": answer}, {"role": "user", "content": correction_text}],
        stream=True,
    )
    found = wait_implicit(live_server, first_id)
    assert (found.signal, found.thumbs, found.evidence) == ("correction", "down", correction_text)
    assert found.correction == "in Vue 3 that's createApp(App).mount('#app'), not new Vue()."
    assert implicit(live_server, second_id) == []  # the new answer is not judged by its own question
    detail = live_server.services.store.feedback.for_interaction(first_id)
    assert [(f.source, f.signal) for f in detail] == [("implicit", "correction")]


def test_an_error_pasted_after_a_fix(live_server: LiveServer) -> None:
    question = [
        {"role": "user", "content": "Write a Python function that loads a JSON file. Answer with code."}
    ]
    first_id, answer = chat(live_server.api, question, max_tokens=48)
    stored = live_server.services.store.interactions.get(first_id)
    assert stored is not None
    error = (
        "Traceback (most recent call last):\n"
        '  File "main.py", line 3, in <module>\n'
        "FileNotFoundError: [Errno 2] No such file or directory: 'data.json'"
    )
    # The precondition of the rule: the model's answer proposed something.
    assert classify_followup(stored.answer, error) == ("error_after_fix", None), stored.answer
    chat(
        live_server.api,
        [*question, {"role": "assistant", "content": answer}, {"role": "user", "content": error}],
        max_tokens=8,
    )
    found = wait_implicit(live_server, first_id)
    assert (found.signal, found.fix_worked, found.thumbs, found.evidence) == (
        "error_after_fix",
        False,
        "down",
        error,
    )


def test_a_regenerate_counts_against_the_first_answer(live_server: LiveServer) -> None:
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are a coding assistant."},
        {"role": "user", "content": "What is a Python generator?"},
    ]
    first_id, _ = chat(live_server.api, messages, max_tokens=8)
    second_id, _ = chat(live_server.api, messages, max_tokens=8, stream=True)
    found = wait_implicit(live_server, first_id)
    assert (found.signal, found.thumbs, found.correction) == ("regenerate", "down", None)
    chat(live_server.api, messages, max_tokens=8)
    assert wait_implicit(live_server, second_id).signal == "regenerate"  # the newest answer takes it
    assert len(implicit(live_server, first_id)) == 1  # one signal per answer, not one per regenerate


def test_a_named_conversation_and_a_neutral_follow_up(live_server: LiveServer) -> None:
    """A client that names its conversation may send only the new message; a plain follow-up says
    nothing about the previous answer."""
    headers = {"X-Genesys-Conversation-Id": "notebook-42"}
    first_id, _ = chat(
        live_server.api, [{"role": "user", "content": "Sort a dict by value."}], headers=headers
    )
    second_id, _ = chat(
        live_server.api, [{"role": "user", "content": "Thanks! And in reverse order?"}], headers=headers
    )
    text = "That's wrong: it should be sorted(d.items(), key=lambda kv: kv[1], reverse=True)."
    chat(live_server.api, [{"role": "user", "content": text}], headers=headers, max_tokens=8)
    found = wait_implicit(live_server, second_id)
    assert found.signal == "correction" and found.evidence == text
    assert found.correction == "it should be sorted(d.items(), key=lambda kv: kv[1], reverse=True)."
    assert implicit(live_server, first_id) == []  # "Thanks! And in reverse order?" is no correction
