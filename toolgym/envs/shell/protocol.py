"""The pieces of the shell session's wire protocol: the keeper, command lines, output streams.

``session.BashSession`` drives them; they are kept apart so each can be read (and tested) alone.
"""

from __future__ import annotations

import asyncio
import fcntl
import os

from toolgym.envs.shell.sandbox import _q

DETERMINISM = {
    "TZ": "UTC",
    "PYTHONDONTWRITEBYTECODE": "1",
    "SOURCE_DATE_EPOCH": "1767225600",
    "GIT_AUTHOR_DATE": "2026-01-01T00:00:00+00:00",
    "GIT_COMMITTER_DATE": "2026-01-01T00:00:00+00:00",
}
"""Environment that keeps episodes identical across runs: the task clock (2026-01-01) for git
commits and tools honouring SOURCE_DATE_EPOCH, and no byte-code caches (a .pyc holds the
source's mtime, which would put the wall clock into the workspace digest). What cannot be
fixed: durations a program measures itself (``Ran 2 tests in 0.002s``) and the mtime of files
the model creates (restored files all carry the task clock)."""

SHELL_PATH = "/usr/local/bin:/usr/bin:/bin"
"""PATH of every sandboxed shell: binaries of the read-only system only."""


def shell_environment(home: str) -> dict[str, str]:
    """The whole environment of a sandboxed shell (the model's, and the checks'), on every backend.

    One definition for all backends: a variable that one backend sets and another does not
    (``DETERMINISM`` above all) makes the same episode differ between them, and a backend that
    forgets the task clock puts the wall clock into git commits and ``.pyc`` files.
    """
    return {
        "PATH": SHELL_PATH, "HOME": home, "USER": "sandbox", "LOGNAME": "sandbox", "LANG": "C.UTF-8",
        "TERM": "dumb", "TMPDIR": "/tmp", **DETERMINISM,
    }


STATUS_FD, GO_FD = 3, 4
"""Where the keeper finds its two private pipes."""


def keeper_script() -> str:
    """The keeper loop (POSIX sh): one bash per sync line on fd 4, exit statuses on fd 3.

    The keeper's own stderr goes to /dev/null (sh reports a killed child there: "Killed"),
    and bash, in a subshell so that the keeper's fd 2 never changes, gets the session's back.
    """
    return (
        "exec 5>&2 2>/dev/null; while read -r go <&4; do "
        'while IFS= read -r line; do [ "$line" = "$go" ] && break; done; '
        "(exec bash --noprofile --norc 2>&5 3>&- 4<&- 5>&-); echo $? >&3; done"
    )


def command_line(command: str) -> str:
    """Bash that runs the model's ``command`` in the session shell, stdin from /dev/null.

    Sourced from a here-string rather than ``eval``'d: an ``eval`` of text ending inside a
    quote, a heredoc or after a lone backslash leaves bash's own parser mid-construct, so the
    next line of the protocol fails to parse; a sourced file ends at its own EOF.
    """
    return f". /dev/fd/9 9<<<{_q(command)} </dev/null"


class Stream:
    """Collects one pipe's bytes up to a cap while looking for the command's nonce."""

    _HOLD = 64  # bytes held back so that a nonce split across two reads is still found

    def __init__(self, cap: int | None):
        self.cap = cap
        self.kept = bytearray()
        self.dropped = 0
        self.pending = b""
        self.found = False
        self.tail = b""  # from the nonce on, once found

    def feed(self, chunk: bytes, marker: bytes) -> None:
        """Add ``chunk``; once ``marker`` shows up, ``found`` is set and ``tail`` starts with it."""
        self.pending += chunk
        at = self.pending.find(marker)
        if at >= 0:
            self._keep(self.pending[:at])
            self.tail, self.pending, self.found = self.pending[at:], b"", True
        elif len(self.pending) > self._HOLD:
            self._keep(self.pending[: -self._HOLD])
            self.pending = self.pending[-self._HOLD:]

    def flush(self) -> None:
        """Keep what is held back (the shell ended: no nonce will come)."""
        if not self.found:
            self._keep(self.pending)
            self.pending = b""

    def _keep(self, data: bytes) -> None:
        room = len(data) if self.cap is None else max(0, self.cap - len(self.kept))
        self.kept += data[:room]
        self.dropped += len(data) - min(room, len(data))


def high_fd(fd: int) -> int:
    """A close-on-exec duplicate of ``fd`` numbered 10 or more (clear of the keeper's 3 and 4)."""
    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)


def read_some(fd: int) -> bytes | None:
    """One read: bytes, b"" at EOF, None when nothing is there now."""
    try:
        return os.read(fd, 65536)
    except (BlockingIOError, InterruptedError):
        return None
    except OSError:
        return b""


def set_done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def stream_text(stream: Stream, name: str) -> str:
    text = bytes(stream.kept).decode("utf-8", errors="replace")
    if stream.dropped:
        text += f"\n[... {name} truncated: {stream.dropped} more bytes not shown ...]\n"
    return text
