"""Running cycles: one at a time across processes, resumed after a crash or a shutdown from the saved
team state, prompt versions recorded (a broken prompt refused, its last good version kept), and the
scheduler starting a cycle by itself after ``trigger_threshold`` interactions."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from genesys.agents.cycles import CycleRunner, owner_alive
from genesys.agents.roles import Toolbox
from genesys.agents.scheduler import CycleScheduler
from genesys.runtime.prompts import PromptLibrary
from genesys.runtime.store import CycleInProgress, Store
from genesys.runtime.vectors import VectorStore
from tests.agents.conftest import FakeTrainer, ScriptedClient, call, fernwick_corrections, record_interaction
from tests.agents.test_society_policy import reports, tools_called

REPO = Path(__file__).resolve().parents[2]


def wait_for(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


class Refuse:
    """A tool that must not run again (the resumed cycle has its report already)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        raise AssertionError("called again after a resume")


def test_one_cycle_at_a_time_across_processes(settings: Any, store: Store) -> None:
    first = CycleRunner(settings, store).claim(trigger="test", requested_by="ana", reason="first")
    other_process = Store(settings.database_url)  # another process's connection to the same database
    try:
        with pytest.raises(CycleInProgress) as refused:
            CycleRunner(settings, other_process, owner="elsewhere:1").claim(
                trigger="operator", requested_by="bob", reason="second"
            )
    finally:
        other_process.close()
    message = str(refused.value)
    assert refused.value.code == "cycle_in_progress" and refused.value.cycle_id == first.id
    assert message.startswith(f"cycle {first.id} is running (step: starting, started ")
    assert message.endswith("by ana); one cycle runs at a time: wait for it to end")
    assert store.cycles.count() == 1

    store.cycles.finish(first.id, state="stopped", outcome="no_data", reason="done")
    assert CycleRunner(settings, store).claim(trigger="test", requested_by="bob", reason="now").active


def test_a_trigger_while_a_cycle_runs_is_refused(settings: Any, store: Store, vectors: VectorStore) -> None:
    fernwick_corrections(store, 4)
    trainer = FakeTrainer("failed", block=True)
    runner = CycleRunner(settings, store, vectors=vectors, toolbox=Toolbox(train_dataset=trainer))
    scheduler = CycleScheduler(runner, threshold=None, poll_seconds=0.2)
    scheduler.start()
    try:
        cycle = scheduler.trigger(requested_by="ana", reason="corrections piled up")
        assert trainer.started.wait(120)
        # The step is recorded as the Trainer's turn begins; under load that can trail the tool's start.
        wait_for(lambda: store.cycles.get(cycle.id).step == "trainer", 60, "the trainer's step")
        with pytest.raises(CycleInProgress, match=f"cycle {cycle.id} is running \\(step: trainer"):
            scheduler.trigger(requested_by="bob", reason="me too")
        with pytest.raises(CycleInProgress):
            runner.run_cycle(trigger="cli", requested_by="bob", reason="me too")
        trainer.release.set()
        ended = wait_for(
            lambda: not store.cycles.get(cycle.id).active and store.cycles.get(cycle.id), 60, "the end"
        )
        assert ended.outcome == "training_failed" and ended.requested_by == "ana"
    finally:
        trainer.release.set()
        scheduler.stop()
    assert store.cycles.count() == 1


CRASHING_CYCLE = textwrap.dedent(
    """
    import sys, time
    from genesys.agents.cycles import CycleRunner
    from genesys.agents.roles import Toolbox
    from genesys.runtime.settings import load_settings
    from genesys.runtime.store import Store

    def train_until_killed(*args, **kwargs):
        print("training", flush=True)
        time.sleep(3600)

    settings = load_settings(data_dir=sys.argv[1])
    toolbox = Toolbox(train_dataset=train_until_killed)
    runner = CycleRunner(settings, Store(settings.database_url), toolbox=toolbox)
    runner.run_cycle(trigger="test", requested_by="crash test", reason="crash")
    """
)


@pytest.mark.timeout(300)
def test_a_cycle_killed_during_training_resumes_without_redoing_the_analyst_and_curator(
    settings: Any, store: Store, vectors: VectorStore, tmp_path: Path
) -> None:
    fernwick_corrections(store, 4)
    script = tmp_path / "crash.py"
    script.write_text(CRASHING_CYCLE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENESYS_")}
    process = subprocess.Popen(
        [sys.executable, str(script), str(settings.data_dir)],
        cwd=REPO,
        env={**env, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        for line in process.stdout:  # log lines, then the trainer's word
            if line.strip() == "training":
                break
        else:
            raise AssertionError("the cycle never reached the Trainer")
        active = store.cycles.active()
        assert active is not None
        wait_for(
            lambda: ("trainer", "train_adapter") in tools_called(store, active.id), 30, "the call stored"
        )
    finally:
        process.send_signal(signal.SIGKILL)  # a crash: nothing gets to clean up
        process.wait(30)

    crashed = store.cycles.active()
    assert crashed is not None and crashed.state == "running" and crashed.turns == 2
    assert crashed.owner == f"{os.uname().nodename}:{process.pid}" and owner_alive(crashed.owner) is False
    analyse, curate = Refuse(), Refuse()
    trainer = FakeTrainer("failed")
    runner = CycleRunner(
        settings,
        store,
        vectors=vectors,
        toolbox=Toolbox(analyze_all=analyse, dataset_for_training=curate, train_dataset=trainer),
    )
    assert runner.resumable() is not None and runner.resumable().id == crashed.id  # type: ignore[union-attr]
    resumed = runner.resume()

    assert resumed is not None and resumed.id == crashed.id
    assert (resumed.state, resumed.outcome, resumed.resumes) == ("stopped", "training_failed", 1)
    assert analyse.calls == 0 and curate.calls == 0
    dataset = store.datasets.latest()
    assert dataset is not None and trainer.calls == [dataset.version]  # trained on the saved Curator report
    assert [s for s, _ in reports(store, crashed.id)] == ["operator", "analyst", "curator", "trainer"]
    notes = [m.text for m in store.cycles.messages(crashed.id) if m.kind == "note"]
    assert len(notes) == 1 and notes[0].startswith(
        f"resumed by {runner.owner} after 2 saved turns (last step: "
    )
    # The crashed attempt's call stays on record; the Analyst's tools were called once.
    assert [t for s, t in tools_called(store, crashed.id) if s == "trainer"] == [
        "train_adapter",
        "train_adapter",
    ]
    assert [t for s, t in tools_called(store, crashed.id) if s == "analyst"] == [
        "analyze_interactions",
        "interaction_overview",
        "decide_training",
    ]
    assert runner.resumable() is None


def test_a_cycle_stopped_at_shutdown_is_interrupted_and_resumed(
    settings: Any, store: Store, vectors: VectorStore
) -> None:
    fernwick_corrections(store, 4)
    blocked = FakeTrainer("failed", block=True)
    runner = CycleRunner(settings, store, vectors=vectors, toolbox=Toolbox(train_dataset=blocked))
    cycle = runner.claim(trigger="test", requested_by="pytest", reason="shutdown")
    ended: list[Any] = []
    thread = threading.Thread(target=lambda: ended.append(runner.run(cycle.id)))
    thread.start()
    assert blocked.started.wait(120)
    runner.stop()
    blocked.release.set()  # a real run is cancelled by stop(); the fake must be let go
    thread.join(60)

    assert ended and ended[0].state == "interrupted" and ended[0].active
    with pytest.raises(CycleInProgress, match="shutting down"):
        runner.claim(trigger="test", requested_by="pytest", reason="after stop")
    next_start = CycleRunner(
        settings, store, vectors=vectors, toolbox=Toolbox(train_dataset=FakeTrainer("failed"))
    )
    resumed = next_start.resume()
    assert resumed is not None and (resumed.state, resumed.outcome) == ("stopped", "training_failed")
    assert [s for s, _ in reports(store, cycle.id)] == ["operator", "analyst", "curator", "trainer"]
    kinds = [m.type for m in store.cycles.messages(cycle.id) if m.kind == "note"]
    assert kinds == ["CycleInterrupted", "CycleResumed"]


def test_cycles_record_prompt_versions_and_refuse_a_broken_prompt(
    settings: Any, store: Store, prompts: PromptLibrary
) -> None:
    runner = CycleRunner(settings, store, prompts=prompts)
    first = runner.run_cycle(trigger="test", requested_by="pytest", reason="versions")
    names = ["analyst", "curator", "trainer", "validator", "deploy", "genesys"]
    assert first.prompt_versions == {name: prompts.get(name).version for name in names}
    assert first.warnings == []

    # A researcher edits the Analyst's prompt: the next cycle records the new version (hot reload).
    analyst_md = prompts.directory / "analyst.md"
    good = analyst_md.read_text() + "\nPrefer corrections about recurring topics.\n"
    _write(analyst_md, good)
    second = runner.run_cycle(trigger="test", requested_by="pytest", reason="edited")
    assert second.prompt_versions["analyst"] != first.prompt_versions["analyst"]
    good_version = second.prompt_versions["analyst"]

    # Then saves it empty by mistake: refused with a clear error, the last good version stays.
    _write(analyst_md, "   \n")
    settings.autogen_agents.mode = "llm"
    client = ScriptedClient([call("decide_training", train=False, reason="nothing new"), "No."])
    runner.model_client = lambda role: client
    third = runner.run_cycle(trigger="test", requested_by="pytest", reason="broken")
    assert third.prompt_versions["analyst"] == good_version
    kept = f"the last good version {good_version} stays in use"
    warning = f"prompt analyst refused: prompt {analyst_md} is empty; {kept}"
    assert third.warnings == [warning]
    notes = [(m.type, m.text) for m in store.cycles.messages(third.id) if m.kind == "note"]
    assert notes == [("PromptRefused", warning)]
    assert client.seen[0][0].content == good.strip()  # the llm agent thought with the last good text
    assert (third.state, third.outcome_reason) == ("stopped", "nothing new")


def test_an_llm_cycle_without_a_readable_prompt_fails_with_the_reason(
    settings: Any, store: Store, prompts: PromptLibrary
) -> None:
    (prompts.directory / "curator.md").unlink()
    settings.autogen_agents.mode = "llm"
    runner = CycleRunner(settings, store, prompts=prompts, model_client=lambda role: ScriptedClient([]))
    cycle = runner.run_cycle(trigger="test", requested_by="pytest", reason="missing")

    assert (cycle.state, cycle.outcome) == ("failed", "error")
    assert cycle.outcome_reason == (
        f"the society could not be built: prompt file not found: {prompts.directory / 'curator.md'}"
    )
    assert cycle.prompt_versions["curator"] == "unavailable"


def test_the_scheduler_starts_a_cycle_after_threshold_interactions(settings: Any, store: Store) -> None:
    runner = CycleRunner(settings, store)
    scheduler = CycleScheduler(runner, threshold=3, poll_seconds=0.2)
    scheduler.start()
    try:
        for n in range(2):
            record_interaction(store, f"How do I sort a list, take {n}?", answer="Use sorted(items).")
        time.sleep(1.0)
        assert store.cycles.count() == 0 and not scheduler.due()
        record_interaction(store, "How do I reverse a list?", answer="Use items[::-1].")
        cycle = wait_for(store.cycles.latest, 30, "a cycle to start")
        assert (cycle.trigger, cycle.requested_by) == ("threshold", "scheduler")
        assert cycle.reason == "3 new interactions since the last cycle started"
        ended = wait_for(
            lambda: (c := store.cycles.get(cycle.id)) and not c.active and c, 60, "the cycle to end"
        )
        assert (ended.state, ended.outcome) == ("stopped", "no_data")  # three plain answers teach nothing
        assert not scheduler.due()  # counting starts again from this cycle's start
        time.sleep(0.5)
        assert store.cycles.count() == 1
    finally:
        scheduler.stop()
    assert not scheduler.running


def _write(path: Path, text: str) -> None:
    """Write and move the file's mtime on, as an editor saving seconds later would."""
    path.write_text(text)
    stamp = path.stat().st_mtime + 5
    os.utime(path, (stamp, stamp))
