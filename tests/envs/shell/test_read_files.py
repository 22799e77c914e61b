"""``Sandbox.read_files`` (one harness exec on docker) gives exactly what ``read_file`` gives, path by path."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.envs.shell.conftest import present_backends
from toolgym.envs.shell import make_sandbox

SETUP = (
    "printf 'one\\ntwo\\n' > plain.txt; : > empty; head -c 3000 /dev/urandom > binary; mkdir -p dir/sub; "
    "echo deep > dir/sub/f; mkfifo fifo; echo locked > locked && chmod 000 locked; ln -s /etc/passwd out; "
    "ln -s dir/sub/f inside; ln -s nowhere dangling; echo nl > $'new\\nline'; seq 1 5000 > long"
)
PATHS = ["plain.txt", "empty", "binary", "dir", "dir/sub/f", "fifo", "locked", "out", "inside", "dangling",
         "new\nline", "long", "missing", "../escape", "/etc/passwd", "dir/../plain.txt"]


@pytest.fixture(scope="module", params=present_backends())
def sb(request):
    box = make_sandbox(request.param, {"output_bytes": 4096})
    box.sync.start()
    assert box.sync.run(SETUP).exit_code == 0
    yield box
    box.sync.close()


def _one(sb, path: str) -> tuple[str, str]:
    try:
        return "text", sb.sync.read_file(path)
    except Exception as exc:  # the kind of refusal is the contract, not the wording
        return type(exc).__name__, ""


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(PATHS), unique=True, max_size=len(PATHS)))
def test_read_files_equals_read_file_path_by_path(sb, paths):
    got = sb.sync.read_files(paths)
    assert list(got) == paths
    seen = {p: ("text", v) if isinstance(v, str) else (type(v).__name__, "") for p, v in got.items()}
    assert seen == {p: _one(sb, p) for p in paths}


def test_every_kind_is_read_or_refused_as_read_file_does(sb):
    got = sb.sync.read_files(PATHS, max_bytes=100)
    assert got["plain.txt"] == "one\ntwo\n" and got["empty"] == "" and got["inside"] == "deep\n"
    assert got["locked"] == "locked\n" and got["new\nline"] == "nl\n" and len(got["long"]) == 100
    refused = {p for p, v in got.items() if not isinstance(v, str)}
    assert refused == {"dir", "fifo", "out", "dangling", "missing", "../escape", "/etc/passwd"}
