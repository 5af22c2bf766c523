"""Reading implicit feedback from the next request: the pure rules, on hand-made conversations."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from genesys.runtime.store import Interaction, utcnow
from genesys.tools.implicit_feedback import classify_followup, detect_implicit_feedback

VUE_ANSWER = "In Vue you mount the app with `new Vue({ el: '#app' })`."
FIX_ANSWER = "Install the package and try again:\n```bash\npip install requests\n```"
SYSTEM = {"role": "system", "content": "You are Continue."}


def previous(
    messages: list[dict[str, Any]], answer: str, *, minutes_ago: float = 1, **fields: Any
) -> Interaction:
    return Interaction(
        id="chatcmpl-previous",
        conversation_id="conv-1",
        request_messages=messages,
        answer=answer,
        model_version="base",
        latency_ms=10,
        created_at=utcnow() - timedelta(minutes=minutes_ago),
        **fields,
    )


def turn(first: list[dict[str, Any]], answer: str, text: str) -> list[dict[str, Any]]:
    """The next request as an IDE sends it: the history, the answer, the new message."""
    return [*first, {"role": "assistant", "content": answer}, {"role": "user", "content": text}]


QUESTION = [SYSTEM, {"role": "user", "content": "How do I create a Vue app?"}]


@pytest.mark.parametrize(
    ("answer", "text", "signal", "correction"),
    [
        (
            VUE_ANSWER,
            "no, in Vue 3 that's createApp(App).mount('#app')",
            "correction",
            "in Vue 3 that's createApp(App).mount('#app')",
        ),
        (
            VUE_ANSWER,
            "No, that's wrong. In Vue 3 you call createApp(App).mount('#app').",
            "correction",
            "In Vue 3 you call createApp(App).mount('#app').",
        ),
        (VUE_ANSWER, "That's wrong", "correction", None),
        (VUE_ANSWER, "Wrong. What is it in Vue 3?", "correction", None),
        (
            VUE_ANSWER,
            "Actually, Vue 3 uses createApp instead of new Vue.",
            "correction",
            "Vue 3 uses createApp instead of new Vue.",
        ),
        (VUE_ANSWER, "Hmm, I think that’s outdated for Vue 3.", "correction", None),
        (
            VUE_ANSWER,
            "Não, no Vue 3 é createApp(App).mount('#app')",
            "correction",
            "no Vue 3 é createApp(App).mount('#app')",
        ),
        (
            VUE_ANSWER,
            "Isso está errado, o correto é usar createApp",
            "correction",
            "o correto é usar createApp",
        ),
        (
            VUE_ANSWER,
            "Thanks, but it should be createApp(App) in Vue 3.",
            "correction",
            "Thanks, but it should be createApp(App) in Vue 3.",
        ),
        (VUE_ANSWER, "It doesn't work", "correction", None),
        (
            FIX_ANSWER,
            'Traceback (most recent call last):\n  File "app.py", line 1, in <module>\n'
            "ModuleNotFoundError: No module named 'requests'",
            "error_after_fix",
            None,
        ),
        (FIX_ANSWER, "TypeError: fetch is not a function", "error_after_fix", None),
        (FIX_ANSWER, "I did that and it still doesn't work", "error_after_fix", None),
        (FIX_ANSWER, "npm ERR! code ERESOLVE", "error_after_fix", None),
        # Not corrections.
        (VUE_ANSWER, "Thanks! How do I add a router?", None, None),
        (VUE_ANSWER, "No problem, that helped.", None, None),
        (VUE_ANSWER, "Actually, can you also show the template?", None, None),
        (VUE_ANSWER, "False positives worry me: how do I test it?", None, None),
        ("Do you want me to add tests as well?", "No, just the component.", None, None),
        (VUE_ANSWER, "", None, None),
    ],
)
def test_classify_followup(answer: str, text: str, signal: str | None, correction: str | None) -> None:
    found = classify_followup(answer, text)
    if signal is None:
        assert found is None
        return
    assert found is not None and found[0] == signal
    assert found[1] == correction


def test_a_correction_turn_names_the_previous_interaction_and_the_right_answer() -> None:
    before = previous(QUESTION, VUE_ANSWER)
    text = "No, in Vue 3 you use createApp(App).mount('#app'), not new Vue()."
    found = detect_implicit_feedback(before, turn(QUESTION, VUE_ANSWER, text))
    assert found is not None
    assert (found.interaction_id, found.signal, found.evidence) == ("chatcmpl-previous", "correction", text)
    assert found.correction == "in Vue 3 you use createApp(App).mount('#app'), not new Vue()."
    assert found.fix_worked is None


def test_an_error_after_a_fix_says_the_fix_did_not_work() -> None:
    before = previous(QUESTION, FIX_ANSWER)
    found = detect_implicit_feedback(before, turn(QUESTION, FIX_ANSWER, "SyntaxError: invalid syntax"))
    assert found is not None and found.signal == "error_after_fix" and found.fix_worked is False


def test_regenerate_is_the_same_request_again_within_the_window() -> None:
    before = previous(QUESTION, VUE_ANSWER, minutes_ago=2)
    # The IDE may rebuild its system prompt; the conversation is what counts.
    again = [{"role": "system", "content": "You are Continue (rebuilt)."}, *QUESTION[1:]]
    found = detect_implicit_feedback(before, again)
    assert found is not None and found.signal == "regenerate" and found.correction is None
    assert detect_implicit_feedback(previous(QUESTION, VUE_ANSWER, minutes_ago=60 * 24), QUESTION) is None


def test_only_a_continuation_of_the_previous_request_counts() -> None:
    history = turn(QUESTION, VUE_ANSWER, "And the router?")
    before = previous(history, "Use vue-router.")
    # The user edited an earlier message: this request does not follow the previous answer.
    edited = turn(QUESTION, VUE_ANSWER, "That's wrong, use createApp")
    assert detect_implicit_feedback(before, edited) is None
    # A client that names its conversation may send only the new message.
    stateless = [{"role": "user", "content": "That's wrong, vue-router 4 uses createRouter()."}]
    found = detect_implicit_feedback(before, stateless)
    assert found is not None and found.signal == "correction"
    # A tool result is not the user speaking.
    tool_turn = [
        *history,
        {"role": "assistant", "content": "Use vue-router."},
        {"role": "tool", "content": "no"},
    ]
    assert detect_implicit_feedback(before, tool_turn) is None


def test_failed_or_non_chat_interactions_get_nothing() -> None:
    text = "No, in Vue 3 that's createApp(App).mount('#app')"
    assert detect_implicit_feedback(previous(QUESTION, "", status="error"), turn(QUESTION, "", text)) is None
    fim = previous([{"role": "user", "content": "def f("}], "x):", endpoint="fim")
    assert detect_implicit_feedback(fim, turn(fim.request_messages, "x):", text)) is None


def test_hostile_text_is_bounded() -> None:
    huge = "No, that's wrong. " + "A" * 3_000_000
    found = detect_implicit_feedback(previous(QUESTION, VUE_ANSWER), turn(QUESTION, VUE_ANSWER, huge))
    assert found is not None and found.signal == "correction"
    assert len(found.evidence) <= 8_192 and found.correction is not None and len(found.correction) <= 65_536
