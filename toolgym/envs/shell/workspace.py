"""Workspace snapshots, canonical manifests, digests and diffs, computed from tar archives.

Every backend exports its workspace as a tar archive; everything here reads only the archive,
so the same files give the same digest on bwrap, docker and local alike. Times and owners are
left out on purpose: they differ between runs and machines while the work does not.
"""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
import tarfile
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from toolgym.envs.digest import digest

SPARSE_KEY = "TOOLGYM.sparse"
"""Pax header of a sparse file's member: JSON ``[[offset, length], ...]`` of the data it holds."""
SIZE_KEY = "TOOLGYM.size"
"""Pax header of a sparse file's member: its logical size."""
SPARSE_HASH_LIMIT = 256 * 2**20
"""Sparse files up to this logical size are hashed as their full content."""

Manifest = dict[str, dict[str, Any]]
"""Relative path -> {"type": "file"|"dir"|"symlink"|"other", "mode": "0644", "sha256" | "target"}."""


@dataclass(frozen=True)
class WorkspaceSnapshot:
    """The files of a workspace at one moment: the archive and its manifest."""

    tar: bytes = field(repr=False)
    manifest: Manifest
    notes: tuple[str, ...] = ()
    """What the archive could not hold (sockets, devices), one sentence each."""

    @property
    def digest(self) -> str:
        """``manifest_digest`` of the snapshot."""
        return manifest_digest(self.manifest)


class WorkspaceDiff(BaseModel):
    """What changed between two workspaces (sorted relative paths)."""

    model_config = ConfigDict(extra="forbid")

    added: list[str] = Field(default_factory=list)
    removed: list[str] = Field(default_factory=list)
    changed: list[str] = Field(default_factory=list)
    """Paths present in both whose content, type, mode or link target differ."""

    @property
    def empty(self) -> bool:
        """True when nothing changed."""
        return not (self.added or self.removed or self.changed)


def _entry(tar: tarfile.TarFile, member: tarfile.TarInfo) -> dict[str, Any]:
    mode = f"{member.mode & 0o7777:04o}"
    if member.isdir():
        return {"type": "dir", "mode": mode}
    if member.issym():
        return {"type": "symlink", "target": member.linkname}
    if member.isfile():
        handle = tar.extractfile(member)
        data = handle.read() if handle is not None else b""
        sparse = member.pax_headers.get(SPARSE_KEY)
        if sparse is not None:
            size = int(member.pax_headers[SIZE_KEY])
            return {"type": "file", "mode": mode, "sha256": _sparse_sha256(data, json.loads(sparse), size), "size": size}
        return {"type": "file", "mode": mode, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    if member.islnk():
        return {"type": "hardlink", "target": _norm(member.linkname)}
    return {"type": "other", "mode": mode}


def _sparse_sha256(data: bytes, extents: list[list[int]], size: int) -> str:
    """The sha256 of a sparse file's logical content (holes read as zeros), as for a dense file.

    Past ``SPARSE_HASH_LIMIT`` bytes hashing the zeros would take minutes, so the digest is
    ``sparse:`` + the sha256 of the extent map and data instead (stable, but not equal to a
    dense file of the same bytes; such a file cannot fit a workspace quota anyway).
    """
    if size > SPARSE_HASH_LIMIT:
        return "sparse:" + hashlib.sha256(json.dumps([size, extents]).encode() + data).hexdigest()
    h, pos, at, zeros = hashlib.sha256(), 0, 0, bytes(1 << 20)
    for offset, length in [*extents, [size, 0]]:
        while pos < offset:
            step = min(offset - pos, len(zeros))
            h.update(zeros[:step])
            pos += step
        h.update(data[at:at + length])
        at, pos = at + length, pos + length
    return h.hexdigest()


def _norm(name: str) -> str:
    return posixpath.normpath(name).lstrip("/").removeprefix("./")


def tar_manifest(data: bytes) -> Manifest:
    """The canonical manifest of a workspace archive (the root directory itself left out)."""
    out: Manifest = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:", encoding="utf-8", errors="surrogateescape") as tar:
        for member in tar:
            name = _norm(member.name)
            if name in ("", "."):
                continue
            out[name] = _entry(tar, member)
            if name == ".git/index" or name.endswith("/.git/index"):
                _canonical_git_index(tar, member, out[name])
    return dict(sorted(out.items()))


def _canonical_git_index(tar: tarfile.TarFile, member: tarfile.TarInfo, entry: dict[str, Any]) -> None:
    """Hash a git index by what it means, not by when it was written.

    The index caches each file's ctime, mtime, device, inode, owner and (for "racily clean"
    entries, depending on timing) size; none of it is the repository's state, all of it
    differs between runs. Those fields and the trailing checksum are zeroed; mode, blob id,
    flags, path and the extensions stay. Formats other than v2/v3 are hashed as they are.
    """
    handle = tar.extractfile(member)
    data = bytearray(handle.read() if handle is not None else b"")
    if len(data) < 32 or data[:4] != b"DIRC" or int.from_bytes(data[4:8], "big") not in (2, 3):
        return
    at, count = 12, int.from_bytes(data[8:12], "big")
    for _ in range(count):
        if at + 62 > len(data):
            return
        data[at:at + 24] = bytes(24)  # ctime, mtime, dev, ino
        data[at + 28:at + 40] = bytes(12)  # uid, gid, size
        flags = int.from_bytes(data[at + 60:at + 62], "big")
        fixed = 64 if flags & 0x4000 else 62  # v3 extended flags
        end = data.find(b"\0", at + fixed)
        if end < 0:
            return
        at += (end - at + 8) // 8 * 8  # entries are NUL-padded to a multiple of 8 bytes
    entry["sha256"] = "gitindex:" + hashlib.sha256(bytes(data[:-20])).hexdigest()


def manifest_digest(manifest: Manifest) -> str:
    """A 32-hex-digit digest of a manifest (same shape as ``ToolEnv.state_digest``)."""
    return digest(manifest)


def diff_manifests(before: Manifest, after: Manifest) -> WorkspaceDiff:
    """Added, removed and changed paths from ``before`` to ``after``."""
    return WorkspaceDiff(
        added=sorted(set(after) - set(before)),
        removed=sorted(set(before) - set(after)),
        changed=sorted(p for p in set(before) & set(after) if before[p] != after[p]),
    )
