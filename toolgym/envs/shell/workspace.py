"""Workspace snapshots, canonical manifests, digests and diffs, computed from tar archives.

Every backend exports its workspace as a tar archive; everything here reads only the archive,
so the same files give the same digest on bwrap, docker and local alike. Times and owners are
left out on purpose: they differ between runs and machines while the work does not.
"""

from __future__ import annotations

import hashlib
import io
import posixpath
import tarfile
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from toolgym.envs.digest import digest

Manifest = dict[str, dict[str, Any]]
"""Relative path -> {"type": "file"|"dir"|"symlink"|"other", "mode": "0644", "sha256" | "target"}."""


@dataclass(frozen=True)
class WorkspaceSnapshot:
    """The files of a workspace at one moment: the archive and its manifest."""

    tar: bytes = field(repr=False)
    manifest: Manifest

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
        return {"type": "file", "mode": mode, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    if member.islnk():
        return {"type": "hardlink", "target": _norm(member.linkname)}
    return {"type": "other", "mode": mode}


def _norm(name: str) -> str:
    return posixpath.normpath(name).lstrip("/").removeprefix("./")


def tar_manifest(data: bytes) -> Manifest:
    """The canonical manifest of a workspace archive (the root directory itself left out)."""
    out: Manifest = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        for member in tar:
            name = _norm(member.name)
            if name in ("", "."):
                continue
            out[name] = _entry(tar, member)
    return dict(sorted(out.items()))


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
