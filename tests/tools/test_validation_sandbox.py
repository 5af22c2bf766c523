"""The sandbox that runs model-written code, against hostile programs, and the HumanEval checks."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from genesys.errors import InvalidRequest
from genesys.tools.validation.humaneval_guard import (
    HumanEvalProblem,
    check_program,
    extract_program,
    load_problems,
)
from genesys.tools.validation.sandbox import run_sandboxed

LIMITS = {"timeout_s": 2.0, "memory_mb": 256}


def test_a_program_that_runs_to_the_end_completes(tmp_path: Path) -> None:
    result = run_sandboxed("print(sum(range(10)))", **LIMITS)
    assert result.completed, result.reason
    assert result.stdout == "45"
    assert result.reason == "ran to the end"


def test_files_written_in_the_working_directory_do_not_survive() -> None:
    program = "\n".join(
        [
            "open('note.txt', 'w').write('kept?')",
            "print(open('note.txt').read())",
            "import os",
            "print(os.getcwd())",
        ]
    )
    result = run_sandboxed(program, **LIMITS)
    assert result.completed, result.reason
    written, workdir = result.stdout.splitlines()
    assert written == "kept?"
    assert not Path(workdir).exists()


def test_the_environment_is_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENESYS_SECRET_FOR_THE_TEST", "do-not-leak")
    result = run_sandboxed("import os\nprint(sorted(os.environ))", **LIMITS)
    assert result.completed, result.reason
    assert "GENESYS_SECRET_FOR_THE_TEST" not in result.stdout


def test_an_infinite_loop_is_killed_at_the_timeout() -> None:
    start = time.monotonic()
    result = run_sandboxed("while True:\n    pass", timeout_s=1.0, memory_mb=256)
    assert not result.completed and result.timed_out
    assert time.monotonic() - start < 5
    assert result.reason.startswith("timed out after")


def test_a_sleeping_program_and_what_it_started_are_killed() -> None:
    # A thread that outlives the program does not keep it alive either: the run ends at the program's end.
    lingering = "import threading, time\nthreading.Thread(target=time.sleep, args=(60,)).start()"
    assert run_sandboxed(lingering, **LIMITS).completed
    result = run_sandboxed("import time\ntime.sleep(60)", timeout_s=1.0, memory_mb=256)
    assert result.timed_out and not result.completed


@pytest.mark.parametrize(
    "program",
    [
        "x = bytearray(2 * 1024 ** 3)",
        "x = [0] * (10 ** 9)",
        "chunks = []\nwhile True:\n    chunks.append(' ' * 10 ** 7)",
    ],
)
def test_a_memory_bomb_fails_with_memory_error(program: str) -> None:
    result = run_sandboxed(program, timeout_s=5.0, memory_mb=256)
    assert not result.completed and not result.timed_out
    assert "MemoryError" in result.reason


@pytest.mark.parametrize(
    ("program", "refused"),
    [
        ("import os\nos.fork()", "os.fork"),
        ("import os\nwhile True:\n    os.fork()", "os.fork"),
        ("import os\nos.system('true')", "os.system"),
        ("import subprocess\nsubprocess.run(['true'])", "_posixsubprocess"),
        ("import os\nos.execv('/bin/true', ['true'])", "os.exec"),
        ("import os, signal\nos.kill(os.getppid(), signal.SIGTERM)", "os.kill"),
        ("import ctypes", "ctypes"),
        ("import socket\nsocket.create_connection(('127.0.0.1', 80))", "socket."),
    ],
)
def test_new_processes_signals_sockets_and_native_code_are_refused(program: str, refused: str) -> None:
    result = run_sandboxed(program, **LIMITS)
    assert not result.completed
    assert "PermissionError" in result.reason and refused in result.reason


def test_writes_and_reads_outside_the_sandbox_are_refused(tmp_path: Path) -> None:
    target = tmp_path / "escaped.txt"
    outside = tmp_path / "secret.txt"
    outside.write_text("secret", encoding="utf-8")
    for program in (
        f"open({str(target)!r}, 'w').write('x')",
        f"import os\nos.open({str(target)!r}, os.O_WRONLY | os.O_CREAT)",
        f"import pathlib\npathlib.Path({str(target)!r}).write_text('x')",
        f"import os\nos.remove({str(outside)!r})",
        f"import shutil\nshutil.rmtree({str(tmp_path)!r})",
        f"print(open({str(outside)!r}).read())",
        "print(open('/proc/1/environ').read())",
    ):
        result = run_sandboxed(program, **LIMITS)
        assert not result.completed, program
        assert "PermissionError: sandbox:" in result.reason, program
    assert not target.exists()
    assert outside.read_text(encoding="utf-8") == "secret"


def test_a_huge_output_is_cut_by_the_file_size_limit() -> None:
    result = run_sandboxed(
        "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)",
        timeout_s=5.0,
        memory_mb=256,
        max_output_bytes=1024 * 1024,
    )
    assert not result.completed and not result.timed_out
    assert "File too large" in result.reason or "SIGXFSZ" in result.reason


@pytest.mark.parametrize(
    "exit_call", ["import sys\nsys.exit(0)", "import os\nos._exit(0)", "raise SystemExit"]
)
def test_leaving_before_the_end_is_not_a_pass(exit_call: str) -> None:
    result = run_sandboxed(f"{exit_call}\nraise AssertionError('the checks')", **LIMITS)
    assert result.returncode == 0
    assert not result.completed
    assert "before the end" in result.reason


def test_a_failing_program_says_why() -> None:
    result = run_sandboxed("raise ValueError('boom')", **LIMITS)
    assert not result.completed and result.returncode == 1
    assert result.reason == "exited with code 1: ValueError: boom"


def test_the_sandbox_leaves_nothing_running() -> None:
    # An unusual memory limit marks this run's process among any others.
    run_sandboxed("import time\ntime.sleep(60)", timeout_s=0.5, memory_mb=263)
    time.sleep(0.2)
    alive = [
        pid for pid in os.listdir("/proc") if pid.isdigit() and "_sandbox_child.py 263 " in _cmdline(pid)
    ]
    assert alive == []


def _cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


# -- HumanEval ----------------------------------------------------------------------------------------


def test_humaneval_problems_come_from_the_package() -> None:
    problems = load_problems(["HumanEval/0", "HumanEval/163"])
    assert [p.task_id for p in problems] == ["HumanEval/0", "HumanEval/163"]
    assert problems[0].entry_point == "has_close_elements"
    with pytest.raises(InvalidRequest, match="unknown HumanEval tasks: HumanEval/164"):
        load_problems(["HumanEval/1", "HumanEval/164"])


@pytest.mark.parametrize("task_id", ["HumanEval/0", "HumanEval/10", "HumanEval/38", "HumanEval/162"])
def test_the_canonical_solution_passes_and_a_wrong_one_fails(task_id: str) -> None:
    (problem,) = load_problems([task_id])
    right = check_program(problem, problem.prompt + problem.canonical_solution)
    assert right.completed, right.reason
    wrong = check_program(problem, problem.prompt + "    return None\n")
    assert not wrong.completed
    assert wrong.returncode == 1


def test_an_exit_inside_the_completion_is_not_a_pass() -> None:
    (problem,) = load_problems(["HumanEval/0"])
    cheat = check_program(problem, problem.prompt + "    import sys\n    sys.exit(0)\n")
    assert not cheat.completed and "before the end" in cheat.reason
    at_import = check_program(problem, problem.prompt + "    pass\nimport os\nos._exit(0)\n")
    assert not at_import.completed


def _problem() -> HumanEvalProblem:
    (problem,) = load_problems(["HumanEval/23"])  # def strlen(string: str) -> int
    return problem


def test_a_fenced_answer_that_defines_the_function_replaces_the_stub() -> None:
    problem = _problem()
    answer = "Here it is:\n```python\ndef strlen(string: str) -> int:\n    return len(string)\n```\nDone."
    program = extract_program(problem, answer)
    assert program.startswith(problem.prompt + "    pass\n")
    assert program.rstrip().endswith("return len(string)")
    assert check_program(problem, program).completed


def test_a_body_only_answer_continues_the_prompt() -> None:
    problem = _problem()
    assert check_program(
        problem, extract_program(problem, "```python\n    return len(string)\n```")
    ).completed
    # No fence at all: the answer is the body.
    assert check_program(problem, extract_program(problem, "    return len(string)\n")).completed
    # An answer about another function does not pass.
    other = "```python\ndef length(s):\n    return len(s)\n```"
    assert not check_program(problem, extract_program(problem, other)).completed
