"""Continue dev-data event bodies for tests, proven valid by Continue's own zod schemas.

``event_body(name, schema, level, **fields)`` builds the body a Continue ``data:`` destination
receives (``{name, data, schema, level, profileId}``) with every field Continue fills in for that
event, schema version and level; ``assert_valid_events(bodies)`` runs them through
``validate_continue_event.mjs`` (npm ``@continuedev/config-yaml``), which fails on any missing,
mistyped or extra field.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

from tests.support.server import REPO_ROOT

VALIDATOR = Path(__file__).with_name("validate_continue_event.mjs")
SCHEMA_PACKAGE = REPO_ROOT / "node_modules" / "@continuedev" / "config-yaml"
USER_AGENT = "Visual Studio Code/1.99.0 (Continue/1.1.40)"
PROFILE_ID = "local"
TIMESTAMP = "2025-06-01T12:00:00.000Z"

# The fields each event has at level "all", per schema version (as Continue's zod schemas pick them).
_BASE_0_2_0 = {
    "eventName": None,  # filled with the event name
    "schema": "0.2.0",
    "timestamp": TIMESTAMP,
    "userId": "user-token-1",
    "userAgent": USER_AGENT,
    "selectedProfileId": PROFILE_ID,
}
_AUTOCOMPLETE_OPTIONS = {
    "disable": False,
    "maxPromptTokens": 1024,
    "debounceDelay": 350,
    "maxSuffixPercentage": 0.2,
    "prefixPercentage": 0.3,
    "multilineCompletions": "auto",
    "slidingWindowPrefixPercentage": 0.75,
    "slidingWindowSize": 500,
    "useCache": True,
    "onlyMyCode": True,
    "useRecentlyEdited": True,
}
_DEFAULTS: dict[tuple[str, str], dict[str, Any]] = {
    ("chatFeedback", "0.1.0"): {
        "modelName": "Genesys",
        "completionOptions": {},
        "prompt": "",
        "completion": "",
        "sessionId": "",
    },
    ("chatFeedback", "0.2.0"): {
        "modelProvider": "openai",
        "modelName": "Genesys",
        "modelTitle": "Genesys",
        "prompt": "",
        "completion": "",
        "sessionId": "",
    },
    ("chatInteraction", "0.2.0"): {
        "modelProvider": "openai",
        "modelName": "Genesys",
        "modelTitle": "Genesys",
        "prompt": "",
        "completion": "",
        "sessionId": "",
    },
    ("autocomplete", "0.1.0"): {
        **_AUTOCOMPLETE_OPTIONS,
        "useFileSuffix": True,
        "time": 412,
        "prefix": "",
        "suffix": "",
        "prompt": "",
        "completion": "",
        "modelProvider": "openai",
        "modelName": "genesys-local",
        "cacheHit": False,
        "filepath": "file:///work/app/main.py",
        "completionId": "",
        "uniqueId": "machine-1",
        "timestamp": TIMESTAMP,
    },
    ("autocomplete", "0.2.0"): {
        **_AUTOCOMPLETE_OPTIONS,
        "time": 412,
        "prefix": "",
        "suffix": "",
        "prompt": "",
        "completion": "",
        "modelProvider": "openai",
        "modelName": "genesys-local",
        "cacheHit": False,
        "filepath": "file:///work/app/main.py",
        "completionId": "",
        "uniqueId": "machine-1",
    },
    ("editOutcome", "0.2.0"): {
        "modelProvider": "openai",
        "modelName": "Genesys",
        "modelTitle": "Genesys",
        "prompt": "",
        "completion": "",
        "previousCode": "",
        "newCode": "",
        "previousCodeLines": 0,
        "newCodeLines": 0,
        "lineChange": 0,
        "accepted": True,
        "filepath": "file:///work/app/main.py",
    },
    ("nextEditOutcome", "0.2.0"): {
        "elapsed": 240,
        "completionOptions": {},
        "completionId": "",
        "uniqueId": "machine-1",
        "timestamp": 1748779200000,
        "fileUri": "file:///work/app/main.py",
        "workspaceDirUri": "file:///work/app",
        "prompt": "",
        "userEdits": "",
        "userExcerpts": "",
        "originalEditableRange": "",
        "completion": "",
        "cursorPosition": {"line": 3, "character": 4},
        "modelProvider": "openai",
        "modelName": "genesys-local",
    },
}
# What level "noCode" leaves out (Continue's `..._noCode` schemas omit these).
NO_CODE_OMITS = {
    "chatFeedback": {"prompt", "completion"},
    "chatInteraction": {"prompt", "completion"},
    "autocomplete": {"prefix", "suffix", "prompt", "completion"},
    "editOutcome": {"prompt", "completion", "previousCode", "newCode"},
    "nextEditOutcome": {
        "fileUri",
        "workspaceDirUri",
        "prompt",
        "userEdits",
        "userExcerpts",
        "originalEditableRange",
        "completion",
    },
}


def continue_prompt(messages: list[dict[str, Any]]) -> str:
    """The ``prompt`` Continue logs for a chat: each message as ``<role>\\ncontent\\n\\n``."""
    return "".join(f"<{m['role']}>\n{m.get('content') or ''}\n\n" for m in messages)


def new_session_id() -> str:
    return str(uuid.uuid4())


def event_body(name: str, schema: str = "0.2.0", level: str = "all", **fields: Any) -> dict[str, Any]:
    """A Continue event body with the defaults for (name, schema) overridden by ``fields``."""
    data: dict[str, Any] = {}
    if schema == "0.2.0" and name != "nextEditOutcome":
        data.update(_BASE_0_2_0, eventName=name)
    elif schema == "0.2.0":
        data.update({k: v for k, v in _BASE_0_2_0.items() if k != "timestamp"}, eventName=name)
    data.update(_DEFAULTS[(name, schema)])
    data.update(fields)
    if level == "noCode":
        for key in NO_CODE_OMITS.get(name, ()):
            data.pop(key, None)
    return {"name": name, "data": data, "schema": schema, "level": level, "profileId": PROFILE_ID}


def validate_events(bodies: list[dict[str, Any]], *, data_config: bool = False) -> list[dict[str, Any]]:
    """Continue's verdict on each event body (or, with ``data_config``, each entry of a config.yaml
    ``data:`` block): ``{"ok": True}`` or ``{"ok": False, "error": ...}``."""
    node = shutil.which("node")
    if node is None or not SCHEMA_PACKAGE.exists():
        raise RuntimeError(
            "node and npm @continuedev/config-yaml are needed: run `npm install` (or make install)"
        )
    done = subprocess.run(
        [node, str(VALIDATOR), *(["--data-config"] if data_config else [])],
        input=json.dumps(bodies),
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=60,
        check=False,
    )
    if done.returncode not in (0, 1):
        raise RuntimeError(f"the validator failed ({done.returncode}): {done.stderr}")
    results: list[dict[str, Any]] = json.loads(done.stdout)
    return results


def assert_valid_events(bodies: list[dict[str, Any]]) -> None:
    """Fails, naming the event and Continue's complaint, unless every body passes Continue's schema."""
    for body, result in zip(bodies, validate_events(bodies), strict=True):
        assert result["ok"], f"{body['name']} {body['schema']} {body['level']}: {result.get('error')}"
