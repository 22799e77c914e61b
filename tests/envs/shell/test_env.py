"""ShellEnv: tools, error observations, determinism, snapshots for GRPO siblings, check_env, pool."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time

import pytest

from toolgym.envs.checker import check_env
from toolgym.envs.shell import SandboxError
from toolgym.envs.shell.env import ShellEnv
from toolgym.envs.shell.pool import SandboxPool
from toolgym.envs.types import GoldAction, StopReason, Task
from toolgym.errors import ConfigError

TASK = Task(
    id="count-lines",
    instruction="How many lines does data.txt have? Write the number to answer.txt.",
    initial_state={"files": {"data.txt": "a\nb\nc\n", "bin/tool.sh": "echo tool\n"}, "setup": ["chmod +x bin/tool.sh", "mkdir -p out"]},
    gold_actions=[GoldAction(name="bash", arguments={"command": "wc -l < data.txt > answer.txt"})],
)


def call(name: str, **arguments) -> str:
    return "<tool_call>" + json.dumps({"name": name, "arguments": arguments}) + "</tool_call>"


@pytest.fixture(scope="module")
def env():
    e = ShellEnv(tasks=[TASK], limits={"command_timeout_s": 2})
    yield e
    e.close()


def test_check_env_passes():
    check_env(ShellEnv(tasks=[TASK]))


def test_bash_reports_stdout_stderr_and_exit_code_apart(env):
    env.reset(seed=0)
    obs, *_ = env.step(call("bash", command="ls bin; ./bin/tool.sh; echo oops >&2; false"))
    out = json.loads(obs.messages[0].content)
    assert out == {"exit_code": 1, "stdout": "tool.sh\ntool\n", "stderr": "oops\n"}


@pytest.mark.parametrize(
    ("action", "error", "words"),
    [
        (call("bash", command=""), "tool_exception", "command is empty"),
        (call("bash", command=["ls"]), "invalid_arguments", "valid string"),
        (call("bash"), "invalid_arguments", "missing required argument 'command'"),
        (call("read_file", path="../../etc/passwd"), "tool_exception", "outside the workspace"),
        (call("read_file", path="/etc/passwd"), "tool_exception", "outside the workspace"),
        (call("write_file", path="../x", content="x"), "tool_exception", "outside the workspace"),
        (call("list_dir", path="nope"), "tool_exception", "no such file"),
        (call("read_file", path="bin"), "tool_exception", "is a directory"),
    ],
)
def test_bad_calls_become_clear_error_observations(env, action, error, words):
    env.reset(seed=0)
    obs, *_ = env.step(action)
    message = obs.messages[0]
    assert message.error == error and words in message.content


def test_symlink_out_of_the_workspace_is_refused_by_file_tools(env):
    env.reset(seed=0)
    env.step(call("bash", command="ln -s /etc/hostname host"))
    obs, *_ = env.step(call("read_file", path="host"))
    assert obs.messages[0].error == "tool_exception" and "outside the workspace" in obs.messages[0].content


def test_timeout_is_an_observation_and_the_shell_goes_on(env):
    env.reset(seed=0)
    obs, *_ = env.step(call("bash", command="sleep 30"))
    out = json.loads(obs.messages[0].content)
    assert out["timed_out"] is True and out["exit_code"] is None and "killed" in out["note"]
    obs, *_ = env.step(call("bash", command="echo back"))
    assert json.loads(obs.messages[0].content)["stdout"] == "back\n"


def test_reset_restores_the_same_workspace_and_a_fresh_shell(env):
    env.reset(seed=0)
    first = env.state_digest()
    env.step(call("bash", command="cd out; rm ../data.txt; X=1; sleep 100 &"))
    assert env.state_digest() != first
    env.reset(seed=0)
    assert env.state_digest() == first
    obs, *_ = env.step(call("bash", command="pwd; echo ${X:-unset}; jobs | wc -l"))
    assert json.loads(obs.messages[0].content)["stdout"].split() == ["/workspace", "unset", "0"]


def test_grpo_siblings_start_from_identical_files():
    parent = ShellEnv(tasks=[TASK])
    parent.reset(seed=0)
    parent.step(call("write_file", path="notes/plan.md", content="step 1\n"))
    snap = parent.snapshot()
    siblings = [ShellEnv(tasks=[TASK]) for _ in range(3)]
    try:
        for sib in siblings:
            sib.restore(snap)
        assert {s.state_digest() for s in siblings} == {parent.state_digest()}
        siblings[0].step(call("bash", command="echo diverged > notes/plan.md"))
        assert siblings[0].state_digest() != siblings[1].state_digest() == parent.state_digest()
    finally:
        for e in [parent, *siblings]:
            e.close()


def test_workspace_diff_against_the_initial_files(env):
    env.reset(seed=0)
    env.step(call("bash", command="wc -l < data.txt > answer.txt; rm bin/tool.sh; echo d >> data.txt"))
    diff = env.workspace_diff()
    assert (diff.added, diff.removed, diff.changed) == (["answer.txt"], ["bin/tool.sh"], ["data.txt"])


def test_failing_setup_names_the_task_and_bad_state_names_the_field():
    broken = Task(id="broken", instruction="x", initial_state={"setup": ["false"]})
    env = ShellEnv(tasks=[broken])
    with pytest.raises(SandboxError, match="task 'broken': setup command 'false' failed"):
        env.reset(seed=0)
    env.close()
    odd = Task(id="odd", instruction="x", initial_state={"file": {"a": "b"}})
    env = ShellEnv(tasks=[odd])
    with pytest.raises(ConfigError, match="'files' and 'setup'"):
        env.reset(seed=0)
    env.close()
    with pytest.raises(ConfigError, match="Did you mean 'bwrap'"):
        ShellEnv(backend="bwarp")


def test_astep_from_an_event_loop():
    async def main():
        env = ShellEnv(tasks=[TASK])
        env.reset(seed=0)
        obs, *_ = await env.astep(call("bash", command="cat data.txt | wc -l"))
        env.close()
        return json.loads(obs.messages[0].content)["stdout"]

    assert asyncio.run(main()).strip() == "3"


def test_warm_pool_hands_out_ready_wiped_sandboxes():
    pool = SandboxPool("bwrap", size=2)
    try:
        from toolgym.envs.shell.runtime import run_sync

        run_sync(pool.fill())
        assert pool.ready == 2
        env = ShellEnv(tasks=[TASK], pool=pool)
        t0 = time.perf_counter()
        env.reset(seed=0)
        warm_reset = time.perf_counter() - t0
        env.step(call("bash", command="echo secret > leftover.txt"))
        env.close()  # back into the pool, wiped
        other = ShellEnv(tasks=[Task(id="empty", instruction="x")], pool=pool)
        other.reset(seed=0)
        assert json.loads(other.step(call("bash", command="ls -A | wc -l"))[0].messages[0].content)["stdout"].strip() == "0"
        other.close()
        assert pool.started <= 4 and warm_reset < 5.0
    finally:
        run_sync(pool.close())
    assert pool.ready == 0


def test_a_sandbox_that_died_is_replaced_at_the_next_reset():
    env = ShellEnv(tasks=[TASK])
    env.reset(seed=0)
    first = env.state_digest()
    dead = env.sandbox
    # As if the kernel had killed the whole sandbox: every process under the launcher, then the
    # launcher. Killing only the launcher left a loaded machine's bash alive long enough (its
    # parent-death signal is asynchronous) to answer the next command.
    for pid, _, _ in reversed(dead.session._tree()):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    dead.session.proc.kill()
    dead.session.proc.wait()
    with pytest.raises(SandboxError):  # infrastructure: the episode fails, it is not the model's turn
        env.step(call("bash", command="echo hi"))
    assert env.stop_reason is StopReason.ENV_ERROR
    env.reset(seed=0)
    assert env.sandbox is not dead and env.state_digest() == first
    env.close()
