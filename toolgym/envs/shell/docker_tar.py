"""Sparse files between GNU tar (inside a container) and toolgym's canonical archives.

GNU tar in the container archives a sparse file as its data extents plus a hole map (``--sparse``),
so a ``truncate -s 1T`` file costs a few bytes; toolgym's archives carry the same thing as a
``TOOLGYM.sparse`` pax header (``toolgym.envs.shell.workspace``), which GNU tar does not know.
``from_gnu`` and ``to_gnu`` translate, on the host, without ever expanding a hole; archives
without sparse files pass through untouched (the common case costs one scan of the headers).
"""

from __future__ import annotations

import io
import json
import tarfile
from typing import cast

from toolgym.envs.shell.workspace import SIZE_KEY, SPARSE_KEY


def _members(data: bytes) -> tuple[tarfile.TarFile, list[tarfile.TarInfo]]:
    tar = tarfile.open(fileobj=io.BytesIO(data), mode="r:", encoding="utf-8", errors="surrogateescape")
    return tar, tar.getmembers()


def from_gnu(data: bytes) -> bytes:
    """A GNU tar archive with GNU sparse members as one with ``TOOLGYM.sparse`` members instead."""
    tar, members = _members(data)
    if not any(m.sparse for m in members):
        return data
    out = io.BytesIO()
    with tar, tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT, encoding="utf-8", errors="surrogateescape") as dst:
        for member in members:
            if not member.sparse:
                dst.addfile(member, tar.extractfile(member) if member.isfile() else None)
                continue
            # typeshed types TarInfo.sparse as int; tarfile stores a list of (offset, length).
            extents = [[offset, length] for offset, length in cast("list[tuple[int, int]]", member.sparse) if length]
            stored = sum(length for _, length in extents)
            # The stored bytes are the extents' data, back to back, where the member's data starts.
            body = data[member.offset_data : member.offset_data + stored]
            info = _plain(member)
            info.size = len(body)
            info.pax_headers = {SPARSE_KEY: json.dumps(extents), SIZE_KEY: str(member.size)}
            dst.addfile(info, io.BytesIO(body))
    return out.getvalue()


def to_gnu(data: bytes) -> bytes:
    """An archive with ``TOOLGYM.sparse`` members rewritten in GNU's pax sparse format 1.0, which GNU tar extracts as sparse files."""
    tar, members = _members(data)
    if not any(SPARSE_KEY in m.pax_headers for m in members):
        return data
    out = io.BytesIO()
    with tar, tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT, encoding="utf-8", errors="surrogateescape") as dst:
        for member in members:
            handle = tar.extractfile(member) if member.isfile() else None
            if SPARSE_KEY not in member.pax_headers:
                dst.addfile(member, handle)
                continue
            extents = json.loads(member.pax_headers[SPARSE_KEY])
            size = int(member.pax_headers[SIZE_KEY])
            if not extents or sum(extents[-1]) < size:
                extents.append([size, 0])  # GNU tar sizes the file by its map's end: a trailing hole needs an extent
            body = handle.read() if handle is not None else b""
            # Format 1.0: the map (count, then offset and length per extent, one number a line,
            # padded to a block) precedes the data; the pax header names the real file and size.
            numbers = [len(extents), *(n for extent in extents for n in extent)]
            head = "".join(f"{n}\n" for n in numbers).encode()
            head += b"\0" * (-len(head) % tarfile.BLOCKSIZE)
            info = _plain(member)
            info.name = "GNUSparseFile.0/" + member.name.rsplit("/", 1)[-1]
            info.size = len(head) + len(body)
            info.pax_headers = {
                "GNU.sparse.major": "1", "GNU.sparse.minor": "0",
                "GNU.sparse.name": member.name, "GNU.sparse.realsize": str(size),
            }
            dst.addfile(info, io.BytesIO(head + body))
    return out.getvalue()


def _plain(member: tarfile.TarInfo) -> tarfile.TarInfo:
    """A regular-file header with ``member``'s name, mode, owner and time (no sparse fields)."""
    info = tarfile.TarInfo(member.name)
    info.mode, info.uid, info.gid, info.mtime = member.mode, member.uid, member.gid, member.mtime
    info.uname, info.gname = member.uname, member.gname
    return info
