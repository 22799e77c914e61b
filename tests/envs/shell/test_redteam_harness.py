"""Red team, harness integrity: the model shadows every command name the harness could use,
reads and writes every fd it can open, prints protocol-like text, and sends malformed bash.

Every attack runs in the model's session; afterwards the harness's own results (file tools,
digest, snapshot/restore, diff, isolated checks, the reward) must equal a control run's, and a
reset must give a clean shell. Counts of attempts per class are asserted (docs/shell_sandboxes.md).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import toolgym
from tests.envs.shell.conftest import present_backends
from toolgym.envs.catalog.shell.env import ShellTaskEnv
from toolgym.envs.shell import make_sandbox
from toolgym.envs.shell.sandbox import tar_of_files
from toolgym.envs.taskfile import load_tasks
from toolgym.envs.types import ToolCall

LIMITS = {"command_timeout_s": 3.0, "memory_mb": 256, "pids": 64, "workspace_mb": 16}
FILES = {"data/a.txt": "alpha\n", "data/b.txt": "bravo\n", "run.sh": "echo run\n"}
CHECK = "cat data/a.txt; python3 -c 'print(6*7)'; ls data | wc -l; head -c 3 data/b.txt; tar -cf - data | tar -tf - | sort | tr '\\n' ' '"
HARNESS_NAMES = (
    "python3", "python", "head", "tail", "tar", "find", "realpath", "readlink", "exec", "cat", "base64", "sh", "bash",
    "printf", "echo", "mkdir", "dirname", "ls", "sort", "git", "sed", "stat", "rm", "chmod", "cd", "eval", "source",
    ".", "builtin", "command", "read", "true", "false", "test", "[", "kill", "env", "sleep", "ipcrm", "tr", "wc",
    "grep", "unittest", "exit", "set", "trap", "wait", "type", "hash", "declare", "unset", "shopt",
)
TECHNIQUES = {
    "function": "{n}() {{ echo FORGED; }} 2>/dev/null",
    "exported_function": "{n}() {{ echo FORGED; }} 2>/dev/null && export -f {n} 2>/dev/null",
    "alias": "shopt -s expand_aliases; alias {n}='echo FORGED'",
    "path_entry": "mkdir -p /tmp/.b && printf '#!/bin/sh\\necho FORGED\\n' > /tmp/.b/{f} && chmod +x /tmp/.b/{f}; export PATH=/tmp/.b:$PATH",
    "bash_env": "printf '%s() {{ echo FORGED; }}\\n' '{n}' >> /tmp/.env; export BASH_ENV=/tmp/.env ENV=/tmp/.env",
}
ENVIRONMENT = (
    "mkdir -p /tmp/.py && printf 'print(\"Ran 9 tests in 0.0s\\\\n\\\\nOK\")\\nraise SystemExit(0)\\n' > /tmp/.py/unittest.py; "
    "cp /tmp/.py/unittest.py /tmp/.py/sitecustomize.py; "
    "export PYTHONPATH=/tmp/.py PYTHONSTARTUP=/tmp/.py/unittest.py PYTHONHOME=/tmp LD_PRELOAD=/tmp/none.so "
    "TAR_OPTIONS=--to-stdout GZIP=-9 GIT_DIR=/tmp IFS=x TMPDIR=/nonexistent HOME=/tmp LC_ALL=xx; "
    "trap 'echo FORGED' DEBUG RETURN; PROMPT_COMMAND='echo FORGED'"
)


def _shadow_all(technique: str) -> tuple[str, int]:
    template = TECHNIQUES[technique]
    names = [n for n in HARNESS_NAMES if technique != "path_entry" or n not in (".",)]
    lines = [template.format(n=n, f=n.replace("/", "_")) for n in names]
    return "\n".join(lines) + "\n" + ENVIRONMENT, len(names) + 1


@pytest.fixture(scope="module", params=present_backends())
def control(request):
    sb = make_sandbox(request.param, LIMITS)
    sb.sync.start()
    sb.sync.import_tar(tar_of_files(FILES))
    snap = sb.sync.snapshot()
    seen = {
        "read": sb.sync.read_file("data/a.txt"), "list": sb.sync.list_dir("data"), "digest": sb.sync.workspace_digest(),
        "check": sb.sync.run_isolated(CHECK).stdout,
    }
    assert seen["check"].startswith("alpha\n42\n2\nbra")
    yield sb, snap, seen
    sb.sync.close()


def _harness_agrees(sb, snap, seen) -> None:
    assert sb.sync.read_file("data/a.txt") == seen["read"]
    assert sb.sync.list_dir("data") == seen["list"]
    assert sb.sync.workspace_digest() == seen["digest"]
    assert sb.sync.run_isolated(CHECK).stdout == seen["check"]
    assert sb.sync.write_file("data/new.txt", "fresh\n") == 6 and sb.sync.read_file("data/new.txt") == "fresh\n"
    assert sb.sync.diff(snap).added == ["data/new.txt"]
    sb.sync.restore(snap)
    assert sb.sync.workspace_digest() == seen["digest"] and sb.sync.diff(snap).empty
    sb.sync.reset_session()
    fresh = sb.sync.run("echo ok; type -t python3 head tar; echo ${BASH_ENV:-none} ${PYTHONPATH:-none}")
    assert fresh.stdout == "ok\nfile\nfile\nfile\nnone none\n" and fresh.exit_code == 0, fresh


@pytest.mark.parametrize("technique", sorted(TECHNIQUES))
def test_every_harness_name_shadowed_changes_nothing_the_harness_sees(control, technique):
    sb, snap, seen = control
    attack, attempts = _shadow_all(technique)
    sb.sync.run(attack)
    sb.sync.run("python3 -c 'print(1)'; head -c 1 data/a.txt")  # the shadows are live for the model...
    _harness_agrees(sb, snap, seen)  # ...and invisible to the harness
    assert attempts >= 50


def test_reading_and_writing_every_fd_in_reach_changes_nothing(control):
    sb, snap, seen = control
    attack = (
        "n=0; for f in /proc/[0-9]*/fd/*; do n=$((n+1)); (timeout 2 cat \"$f\" >/dev/null 2>&1 &); "
        "(printf '%s 0\\n' deadbeef > \"$f\") 2>/dev/null; done; echo tried $n"
    )
    result = sb.sync.run(attack)
    _harness_agrees(sb, snap, seen)
    assert sb.sync.run("ls /proc/1/fd 2>&1").stdout.endswith("Permission denied\n")  # the keeper's pipes stay out of reach
    assert result.exit_code is None or int(result.stdout.split()[-1]) >= 6


FRAGMENTS = st.sampled_from([
    "\n", " ", "0", "137", "deadbeef" * 3, "__tg_respawn__", "Killed", "0123456789abcdef" * 2, "\r", "\\", "'", '"', "$(",
    "`", "<<EOF", "<<'X'", "}", "{", ";", "&&", "|", "(", ")", "exit", "echo x", "\t", "é", "\x1b[31m", "#", "EOF", "$'",
])
HOSTILE_TEXT = st.lists(FRAGMENTS, min_size=1, max_size=12).map("".join)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=HOSTILE_TEXT)
def test_printed_protocol_like_text_is_just_output(control, text):
    sb, _, _ = control
    quoted = "'" + text.replace("'", "'\"'\"'") + "'"
    result = sb.sync.run(f"printf %s {quoted}; printf %s {quoted} >&2")
    assert (result.stdout, result.stderr, result.exit_code, result.note) == (text, text, 0, "")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(command=HOSTILE_TEXT.filter(lambda c: c.strip()))
def test_malformed_bash_never_breaks_the_harness(control, command):
    sb, _, seen = control
    result = sb.sync.run(command)  # lone backslashes, unterminated quotes and heredocs, stray braces
    assert result.exit_code is not None or result.timed_out or "shell exited" in result.note
    assert sb.sync.run("echo ok").stdout.endswith("ok\n")
    assert sb.sync.read_file("data/a.txt") == seen["read"]


def test_ps_and_the_keeper_command_line_do_not_disturb_results(control):
    sb, _, _ = control
    for command in ("ps aux", "cat /proc/1/cmdline", "cat /proc/*/cmdline", "ps -ef | grep -v grep"):
        result = sb.sync.run(command)
        assert result.exit_code == 0 and result.note == "", (command, result)


def test_shadows_neither_fake_nor_spoil_the_reward():
    task = next(t for t in load_tasks(ShellTaskEnv.eval_split) if t.metadata["family"] == "fix_python_bug")
    attack = "\n".join(_shadow_all(t)[0] for t in TECHNIQUES)
    env = toolgym.make("toolgym/shell-v0", backend="bwrap", limits=LIMITS)
    try:
        rewards = []
        for calls in ([], task.gold_actions):  # the fix (if any) first, then every shadow at once
            env.reset(options={"task": task})
            for i, gold in enumerate(calls):
                env.step(env.format.render_turn("", [ToolCall(id=f"g{i}", name=gold.name, arguments=gold.arguments)]))
            env.step(env.format.render_turn("", [ToolCall(id="a", name="bash", arguments={"command": attack})]))
            rewards.append(env.outcome_reward())
        assert rewards == [0.0, 1.0]  # shadows cannot fake a pass, nor spoil a real one
    finally:
        env.close()
