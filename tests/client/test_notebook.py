"""``examples/genesys.ipynb`` executed cell by cell (nbclient, a real ipykernel) against the real
server on loopback: every cell runs without error, and what it did is in the server's store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import LiveServer
from tests.support.server import REPO_ROOT

NOTEBOOK = REPO_ROOT / "examples" / "genesys.ipynb"


def _text(cell: Any) -> str:
    """Everything a cell printed or displayed, as text."""
    parts = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            parts.append(output["text"])
        for mime in ("text/plain", "text/markdown"):
            if mime in output.get("data", {}):
                parts.append(output["data"][mime])
    return "".join(parts)


def test_the_shipped_notebook_has_no_outputs() -> None:
    import nbformat

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code)


@pytest.mark.slow
def test_the_notebook_runs_against_a_live_server(
    live_server: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nbformat
    from nbclient import NotebookClient

    # The kernel is a child process: it inherits these.
    monkeypatch.setenv("GENESYS_URL", live_server.base_url)
    monkeypatch.setenv("GENESYS_MAX_TOKENS", "16")
    monkeypatch.setenv("GENESYS_CYCLE_TIMEOUT", "180")
    monkeypatch.delenv("GENESYS_API_KEY", raising=False)

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    try:
        NotebookClient(
            notebook,
            timeout=240,  # per cell; the cycle cell follows the cycle to its end
            kernel_name="python3",
            resources={"metadata": {"path": str(tmp_path)}},
        ).execute()  # raises CellExecutionError, with the traceback, if any cell fails
    finally:  # what ran, with its outputs and each cell's timing, for a look after a failure
        nbformat.write(notebook, tmp_path / "executed.ipynb")

    outputs = {index: _text(cell) for index, cell in enumerate(notebook.cells) if cell.cell_type == "code"}
    printed = "\n".join(outputs.values())
    # setup_training_system: the test server has automatic cycles off, and says how to turn them on.
    assert "not ready: learning" in printed and "autogen_agents.schedule" in printed
    assert "| ✅ | agents |" in printed  # the status renders as a table

    store = live_server.services.store
    interactions = store.interactions.list(limit=100)
    assert len(interactions) == 3 and all(i.status == "completed" for i in interactions)
    for interaction in interactions:
        assert f"interaction {interaction.id}" in printed or interaction.answer in printed

    vue = next(i for i in interactions if "Vue 3 app" in i.request_messages[-1]["content"])
    (correction,) = [f for f in store.feedback.for_interaction(vue.id) if f.correction]
    assert correction.thumbs == "down" and "createApp(App).mount('#app')" in correction.correction
    assert "explicit: thumbs down, correction: In Vue 3" in printed

    assert "satisfaction: 1 of 2 judged answers" in printed and "corrections: 1;" in printed
    assert "user_satisfaction" in printed and "0 alerts firing" in printed

    (cycle,) = store.cycles.recent(limit=5)
    assert (cycle.state, cycle.outcome, cycle.reason) == (
        "stopped",
        "no_data",
        "corrections from the notebook",
    )
    assert f"cycle {cycle.id}: stopped, outcome no_data: {cycle.outcome_reason}" in printed
    assert "[analyst chat]" in printed  # the Analyst's report, followed live
    assert outputs[max(outputs)].strip() == "no rollout yet; base serves everyone"
