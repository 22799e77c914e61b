"""The workspace read and written by the host directly, never by a command inside the sandbox.

``HostTree`` works on a directory the host can reach (for bwrap: ``/proc/<keeper>/root/workspace``,
the sandbox's own mount seen from outside). Nothing runs inside the sandbox, so nothing the model
defines there (functions, aliases, ``PATH`` entries, background readers) can change what the
file tools, the digest, snapshots or restores see.

The tree belongs to the model, who may race us, so every path is walked one component at a time
through directory descriptors opened with ``O_NOFOLLOW``: a symbolic link is never followed by the
kernel. ``read``/``write``/``listdir`` follow a link themselves, and only while it stays inside
the workspace (its target read as the sandbox sees it: absolute targets start at ``/workspace``).

Exports are canonical tar archives (sorted, times and owners zeroed); sparse files carry only
their data extents (``TOOLGYM.sparse`` pax header), so a 1 TiB hole costs nothing. FIFOs are
archived as FIFOs; sockets and devices cannot be and are listed in ``notes`` instead.
"""

from __future__ import annotations

import io
import json
import os
import stat
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager

from toolgym.envs.shell.sandbox import PathOutsideWorkspace, SandboxError
from toolgym.envs.shell.workspace import SIZE_KEY, SPARSE_KEY

FIXED_MTIME = 1767225600
"""2026-01-01T00:00:00Z: the time every restored entry carries, so ``ls -l`` is the same in every run."""
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_MAX_LINKS = 40
_CHUNK = 1 << 20


class HostTree:
    """A workspace directory handled from the host.

    Args:
        root: Host path of the workspace directory.
        inside: The same directory as the sandbox sees it (absolute link targets start there).
        owner: (uid, gid) given to everything the host creates, or None to keep the host's own.
    """

    def __init__(self, root: str, inside: str, owner: tuple[int, int] | None = None):
        self.root, self.inside, self.owner = root, inside.rstrip("/") or "/", owner

    # ------------------------------------------------------------------ walking

    @contextmanager
    def _root_fd(self) -> Iterator[int]:
        try:
            fd = os.open(self.root, _DIR)
        except OSError as exc:  # the keeper (and with it the sandbox's mounts) is gone
            raise SandboxError(f"the sandbox's workspace is gone ({exc.strerror}): the sandbox died") from None
        try:
            yield fd
        finally:
            os.close(fd)

    def _parts(self, path: str) -> list[str]:
        """Components of ``path`` (relative to the workspace, or absolute under ``inside``)."""
        if path.startswith("/"):
            if path != self.inside and not path.startswith(self.inside + "/"):
                raise PathOutsideWorkspace(f"path {path!r} is outside the workspace {self.inside}")
            path = path[len(self.inside):]
        return [p for p in path.split("/") if p not in ("", ".")]

    def _walk(self, root: int, parts: list[str], follow_last: bool, create_dirs: bool = False) -> tuple[int, str]:
        """(fd of the parent directory, last name) of ``parts`` with inside links followed.

        The caller closes the returned fd. ``("", root dup)`` stands for the workspace itself.
        """
        stack = [os.dup(root)]
        todo, hops = list(parts), 0
        try:
            while todo:
                name = todo.pop(0)
                if name == "..":
                    if len(stack) == 1:
                        raise PathOutsideWorkspace("the path climbs out of the workspace")
                    os.close(stack.pop())
                    continue
                last = not todo
                st = _lstat(stack[-1], name)
                if st is not None and stat.S_ISLNK(st.st_mode) and (follow_last or not last):
                    hops += 1
                    if hops > _MAX_LINKS:
                        raise OSError(f"too many levels of symbolic links at {name!r}")
                    target = os.readlink(name, dir_fd=stack[-1])
                    if target.startswith("/"):
                        if target != self.inside and not target.startswith(self.inside + "/"):
                            raise PathOutsideWorkspace(f"a symbolic link ({name!r} -> {target!r}) leads outside the workspace")
                        for fd in stack[1:]:
                            os.close(fd)
                        del stack[1:]
                        target = target[len(self.inside):]
                    todo[:0] = [p for p in target.split("/") if p not in ("", ".")]
                    continue
                if last:
                    return stack.pop(), name
                if st is None and create_dirs:
                    os.mkdir(name, 0o755, dir_fd=stack[-1])
                    self._chown(stack[-1], name)
                elif st is None:
                    raise FileNotFoundError(f"no such file or directory: {name!r}")
                elif not stat.S_ISDIR(st.st_mode):
                    raise NotADirectoryError(f"{name!r} is not a directory")
                stack.append(_open(name, _DIR, stack[-1], st))
            return stack.pop(), ""
        finally:
            for fd in stack:
                os.close(fd)

    def _chown(self, dir_fd: int, name: str) -> None:
        if self.owner is not None:
            os.chown(name, *self.owner, dir_fd=dir_fd, follow_symlinks=False)

    # ------------------------------------------------------------------ file tools

    def read(self, path: str, cap: int) -> bytes:
        """At most ``cap`` bytes of a regular file (links followed inside the workspace)."""
        with self._root_fd() as root:
            parent, name = self._walk(root, self._parts(path), follow_last=True)
            try:
                if not name:
                    raise IsADirectoryError(f"{path!r} is a directory; use list_dir")
                st = _lstat(parent, name)
                if st is None:
                    raise FileNotFoundError(f"no such file or directory: {path!r}")
                if stat.S_ISDIR(st.st_mode):
                    raise IsADirectoryError(f"{path!r} is a directory; use list_dir")
                if not stat.S_ISREG(st.st_mode):
                    raise OSError(f"{path!r} is not a regular file ({_kind(st.st_mode)}); it cannot be read as text")
                fd = _open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, parent, st)
                try:
                    return _read_upto(fd, cap)
                finally:
                    os.close(fd)
            finally:
                os.close(parent)

    def write(self, path: str, data: bytes) -> None:
        """Create or replace a regular file (parents created); raises when any byte is not written."""
        with self._root_fd() as root:
            parent, name = self._walk(root, self._parts(path), follow_last=True, create_dirs=True)
            try:
                if not name:
                    raise IsADirectoryError(f"{path!r} is a directory")
                st = _lstat(parent, name)
                if st is not None and stat.S_ISDIR(st.st_mode):
                    raise IsADirectoryError(f"{path!r} is a directory")
                if st is not None and not stat.S_ISREG(st.st_mode):
                    raise OSError(f"{path!r} is a {_kind(st.st_mode)}, not a regular file; remove it first")
                flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
                fd = os.open(name, flags, 0o644, dir_fd=parent)
                try:
                    if st is None:
                        self._chown(parent, name)
                    _write_all(fd, data, path)
                finally:
                    os.close(fd)
            finally:
                os.close(parent)

    def listdir(self, path: str) -> list[str]:
        """Names in a directory sorted by their bytes; directories end with ``/``."""
        with self._root_fd() as root:
            parent, name = self._walk(root, self._parts(path), follow_last=True)
            try:
                if name:
                    st = _lstat(parent, name)
                    if st is None:
                        raise FileNotFoundError(f"no such file or directory: {path!r}")
                    if not stat.S_ISDIR(st.st_mode):
                        raise NotADirectoryError(f"{path!r} is not a directory")
                    fd = _open(name, _DIR, parent, st)
                else:
                    fd = os.dup(parent)
                try:
                    out = []
                    for entry in sorted(os.scandir(fd), key=lambda e: os.fsencode(e.name)):
                        is_dir = entry.is_dir(follow_symlinks=False)
                        out.append(entry.name + ("/" if is_dir else ""))
                    return out
                finally:
                    os.close(fd)
            finally:
                os.close(parent)

    # ------------------------------------------------------------------ whole tree

    def wipe(self, mode: int = 0o755) -> None:
        """Remove everything under the root; the root directory itself stays, back at ``mode``."""
        with self._root_fd() as root:
            _empty(root)
            self._reset_root(root, mode)

    def _reset_root(self, root: int, mode: int) -> None:
        # The model may have chmod-ed or chown-ed the root itself (`chmod 000 .`).
        if self.owner is not None:
            os.chown(root, *self.owner)
        os.chmod(root, mode)

    def export_tar(self) -> tuple[bytes, list[str]]:
        """The tree as a canonical tar archive, and notes on what could not be archived."""
        buf, notes = io.BytesIO(), list[str]()
        with self._root_fd() as root, tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT, encoding="utf-8", errors="surrogateescape") as tar:
            tar.addfile(_info(".", os.fstat(root)))
            _add_dir(tar, root, "", notes)
        return buf.getvalue(), notes

    def import_tar(self, data: bytes) -> None:
        """Replace the tree by the archive's entries (created through descriptors, never following links)."""
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:", encoding="utf-8", errors="surrogateescape") as tar:
            members = tar.getmembers()
            top = next((m.mode & 0o7777 for m in members if not _member_parts(m.name) and m.isdir()), 0o755)
            with self._root_fd() as root:
                _empty(root)
                self._reset_root(root, 0o755)
                dirs: list[tuple[list[str], int]] = []
                for member in members:
                    parts = _member_parts(member.name)
                    if not parts:
                        continue
                    self._extract(tar, root, parts, member)
                    if member.isdir():
                        dirs.append((parts, member.mode & 0o7777))
                for parts, mode in sorted(dirs, key=lambda d: -len(d[0])):  # deepest first: a 000 dir still lets us in
                    parent, name = self._walk(root, parts, follow_last=False)
                    try:
                        os.chmod(name, mode, dir_fd=parent, follow_symlinks=False)
                        os.utime(name, (FIXED_MTIME, FIXED_MTIME), dir_fd=parent, follow_symlinks=False)
                    finally:
                        os.close(parent)
                os.chmod(root, top)
                os.utime(root, (FIXED_MTIME, FIXED_MTIME))

    def _extract(self, tar: tarfile.TarFile, root: int, parts: list[str], member: tarfile.TarInfo) -> None:
        parent, name = self._walk(root, parts, follow_last=False, create_dirs=True)
        try:
            if member.isdir():
                if _lstat(parent, name) is None:
                    os.mkdir(name, 0o700, dir_fd=parent)
            elif member.issym():
                os.symlink(member.linkname, name, dir_fd=parent)
            elif member.islnk():
                src_parent, src = self._walk(root, _member_parts(member.linkname), follow_last=False)
                try:
                    os.link(src, name, src_dir_fd=src_parent, dst_dir_fd=parent, follow_symlinks=False)
                finally:
                    os.close(src_parent)
                return
            elif member.isfifo():
                os.mkfifo(name, member.mode & 0o777, dir_fd=parent)
            elif member.isfile():
                fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=parent)
                try:
                    _write_member(tar, member, fd)
                finally:
                    os.close(fd)
            else:
                return  # devices never come from our own exports
            self._chown(parent, name)
            if not member.issym():
                os.chmod(name, member.mode & 0o7777, dir_fd=parent, follow_symlinks=False)
            os.utime(name, (FIXED_MTIME, FIXED_MTIME), dir_fd=parent, follow_symlinks=False)
        finally:
            os.close(parent)


# ---------------------------------------------------------------------------- helpers


def _open(name: str, flags: int, dir_fd: int, st: os.stat_result | None = None) -> int:
    """``os.open`` that also opens an entry whose mode shuts its owner out (``chmod 000``).

    Root reads through any mode. An ordinary user (the sandbox runs as that user's uid, so it
    owns everything in the workspace) lends itself read access for the moment of the open.
    """
    try:
        return os.open(name, flags, dir_fd=dir_fd)
    except PermissionError:
        st = st or os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if st.st_uid != os.geteuid():
            raise
        need = 0o500 if stat.S_ISDIR(st.st_mode) else 0o400
        os.chmod(name, st.st_mode & 0o7777 | need, dir_fd=dir_fd, follow_symlinks=False)
        try:
            return os.open(name, flags, dir_fd=dir_fd)
        finally:
            os.chmod(name, st.st_mode & 0o7777, dir_fd=dir_fd, follow_symlinks=False)


def _lstat(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _kind(mode: int) -> str:
    kinds = {stat.S_ISFIFO: "FIFO", stat.S_ISSOCK: "socket", stat.S_ISCHR: "character device", stat.S_ISBLK: "block device", stat.S_ISLNK: "symbolic link"}
    return next((name for test, name in kinds.items() if test(mode)), "special file")


def _read_upto(fd: int, cap: int) -> bytes:
    chunks, left = [], cap
    while left > 0:
        chunk = os.read(fd, min(left, _CHUNK))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _write_all(fd: int, data: bytes, path: str) -> None:
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view[:_CHUNK]):]
    except OSError as exc:
        os.ftruncate(fd, 0)  # never leave half a file that looks written
        reason = "the workspace is full" if exc.errno == 28 else exc.strerror
        raise OSError(f"could not write {path!r}: {reason} ({len(data) - len(view)} of {len(data)} bytes written, file left empty)") from None


def _member_parts(name: str) -> list[str]:
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ValueError(f"archive member {name!r} climbs out of the workspace")
    return parts


def _empty(dir_fd: int) -> None:
    """Delete every entry of an open directory, whatever its mode (links never followed)."""
    for entry in list(os.scandir(dir_fd)):
        st = entry.stat(follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            if st.st_mode & 0o700 != 0o700:
                os.chmod(entry.name, st.st_mode | 0o700, dir_fd=dir_fd, follow_symlinks=False)
            sub = os.open(entry.name, _DIR, dir_fd=dir_fd)
            try:
                _empty(sub)
            finally:
                os.close(sub)
            os.rmdir(entry.name, dir_fd=dir_fd)
        else:
            os.unlink(entry.name, dir_fd=dir_fd)


def _info(name: str, st: os.stat_result) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode, info.mtime, info.uid, info.gid, info.uname, info.gname = st.st_mode & 0o7777, 0, 0, 0, "", ""
    return info


def _add_dir(tar: tarfile.TarFile, dir_fd: int, prefix: str, notes: list[str]) -> None:
    entries = sorted(os.scandir(dir_fd), key=lambda e: os.fsencode(e.name))
    for entry in entries:
        try:
            _add_entry(tar, dir_fd, entry, f"{prefix}{entry.name}", notes)
        except OSError as exc:  # the model's processes may change the tree while we read it
            notes.append(f"{prefix}{entry.name!r} changed while being archived ({exc.strerror or exc}): left out")


def _add_entry(tar: tarfile.TarFile, dir_fd: int, entry: os.DirEntry[str], name: str, notes: list[str]) -> None:
    st = entry.stat(follow_symlinks=False)
    info = _info(name, st)
    if stat.S_ISDIR(st.st_mode):
        info.type = tarfile.DIRTYPE
        sub = _open(entry.name, _DIR, dir_fd, st)
        try:
            tar.addfile(info)
            _add_dir(tar, sub, name + "/", notes)
        finally:
            os.close(sub)
    elif stat.S_ISLNK(st.st_mode):
        info.type, info.linkname = tarfile.SYMTYPE, os.readlink(entry.name, dir_fd=dir_fd)
        tar.addfile(info)
    elif stat.S_ISFIFO(st.st_mode):
        info.type = tarfile.FIFOTYPE
        tar.addfile(info)
    elif stat.S_ISREG(st.st_mode):
        _add_file(tar, dir_fd, entry.name, info, st)
    else:
        notes.append(f"{name!r} is a {_kind(st.st_mode)}: left out of the archive")


def _add_file(tar: tarfile.TarFile, dir_fd: int, name: str, info: tarfile.TarInfo, st: os.stat_result) -> None:
    fd = _open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd, st)
    try:
        st = os.fstat(fd)  # what was opened, which a racing process may have swapped
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"it became a {_kind(st.st_mode)}")
        extents = _extents(fd, st.st_size) if st.st_blocks * 512 < st.st_size else None
        if extents is None:
            data = _read_upto(fd, st.st_size)
        else:
            data = b"".join(os.pread(fd, length, offset) for offset, length in extents)
            info.pax_headers = {SPARSE_KEY: json.dumps(extents), SIZE_KEY: str(st.st_size)}
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    finally:
        os.close(fd)


def _extents(fd: int, size: int) -> list[list[int]]:
    """[offset, length] of each data region of a file (SEEK_DATA/SEEK_HOLE)."""
    out, pos = [], 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError:  # ENXIO: only a hole is left
            break
        end = os.lseek(fd, start, os.SEEK_HOLE)
        out.append([start, end - start])
        pos = end
    return out


def _write_member(tar: tarfile.TarFile, member: tarfile.TarInfo, fd: int) -> None:
    handle = tar.extractfile(member)
    data = handle.read() if handle is not None else b""
    sparse = member.pax_headers.get(SPARSE_KEY)
    if sparse is None:
        _write_all(fd, data, member.name)
        return
    at = 0
    for offset, length in json.loads(sparse):
        os.pwrite(fd, data[at:at + length], offset)
        at += length
    os.ftruncate(fd, int(member.pax_headers[SIZE_KEY]))
