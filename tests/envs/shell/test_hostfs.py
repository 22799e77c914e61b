"""``HostTree``: the host's own access to a workspace, on plain temporary directories (no sandbox).

Properties over generated trees: whatever names, contents and symbolic links the model leaves,
the tools never read or write outside the root, and export -> import reproduces the manifest.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolgym.envs.shell.hostfs import HostTree
from toolgym.envs.shell.sandbox import PathOutsideWorkspace
from toolgym.envs.shell.workspace import tar_manifest

SECRET = b"host-secret-9f1c"
NAME = st.text(st.characters(blacklist_characters="/\x00", blacklist_categories=("Cs",)), min_size=1, max_size=12).filter(lambda n: n not in (".", ".."))
BYTES_NAME = st.binary(min_size=1, max_size=8).filter(lambda b: b"/" not in b and b"\x00" not in b and b not in (b".", b".."))
LINK_TARGET = st.sampled_from(["/etc/passwd", "../secret", "../../secret", "/ws", "/ws/a", "a", "b/c", ".", "..", "/ws/../secret", "loop", "/"])


_MADE: list[Path] = []


@pytest.fixture(scope="module", autouse=True)
def _clean_up():
    yield
    for top in _MADE:
        shutil.rmtree(top, ignore_errors=True)


def _tree() -> tuple[Path, HostTree]:
    top = Path(tempfile.mkdtemp(prefix="hostfs-"))
    _MADE.append(top)
    (top / "secret").write_bytes(SECRET)
    (top / "ws").mkdir()
    return top, HostTree(str(top / "ws"), "/ws")


@settings(max_examples=60, deadline=None)
@given(names=st.lists(NAME, min_size=1, max_size=4), content=st.binary(max_size=3000))
def test_write_read_list_round_trip_any_name(names, content):
    top, tree = _tree()
    path = "/".join(names)
    tree.write(path, content)
    assert tree.read(path, 10_000) == content
    assert names[-1] in tree.listdir("/".join(names[:-1]) or ".")


@settings(max_examples=80, deadline=None)
@given(links=st.lists(st.tuples(st.sampled_from(["a", "b", "loop", "b/c", "d"]), LINK_TARGET), max_size=5),
       probe=st.sampled_from(["a", "b", "b/c", "loop", "d", "d/x", "a/secret", "b/c/secret"]))
def test_links_never_lead_a_tool_outside(links, probe):
    top, tree = _tree()
    os.makedirs(top / "ws" / "b", exist_ok=True)
    for name, target in links:
        where = top / "ws" / name
        if not where.exists() and not where.is_symlink() and where.parent.is_dir() and not where.parent.is_symlink():
            os.symlink(target, where)
    for op in (lambda: tree.read(probe, 100), lambda: tree.listdir(probe), lambda: tree.write(probe, b"w")):
        try:
            out = op()
        except (PathOutsideWorkspace, OSError):
            continue
        assert out is None or (SECRET not in (out if isinstance(out, bytes) else b"".join(os.fsencode(n) for n in out)))
    assert (top / "secret").read_bytes() == SECRET  # never written through a link
    assert sorted(os.listdir(top)) == ["secret", "ws"]  # nothing created outside


@settings(max_examples=30, deadline=None)
@given(files=st.dictionaries(BYTES_NAME, st.binary(max_size=500), min_size=1, max_size=6), mode=st.sampled_from([0o000, 0o400, 0o644, 0o755]))
def test_export_import_reproduces_hostile_names_and_modes(files, mode):
    top, tree = _tree()
    root = os.fsencode(str(top / "ws"))
    for name, data in files.items():
        with open(os.path.join(root, name), "wb") as f:
            f.write(data)
        os.chmod(os.path.join(root, name), mode)
    os.mkfifo(os.path.join(root, b"fifo\n"))
    data, notes = tree.export_tar()
    _, copy = _tree()
    copy.import_tar(data)
    again, _ = copy.export_tar()
    assert tar_manifest(again) == tar_manifest(data) and notes == []
    assert len(tar_manifest(data)) == len(files) + 1


def test_a_failed_write_says_so_and_leaves_no_half_file(tmp_path):
    tree = HostTree(str(tmp_path), "/ws")
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(OSError, match="FIFO"):
        tree.read("pipe", 10)  # refused, never a hang
    with pytest.raises(OSError, match="FIFO, not a regular file"):
        tree.write("pipe", b"x")
    with pytest.raises(PathOutsideWorkspace):
        tree.read("/etc/passwd", 10)
