"""An exclusive lock on a directory, so that two trainers never share a train_dir.

Standard library only. The lock is `flock(2)` on a small file inside the directory:
the kernel releases it when the holder's file descriptor closes, which includes the
holder dying from kill -9, so no stale lock ever blocks the next run and no
"is that pid still alive?" guessing is needed. The file keeps the holder's pid and
host, which the refusal names. (flock is advisory and local to one machine; on
network filesystems that do not propagate it, two hosts can still both take it.)
"""
import contextlib
import datetime
import errno
import fcntl
import os
import socket

LOCK_FILENAME = ".magenta_style.lock"


class LockError(RuntimeError):
    """The directory is locked by another process; the message names it (one line)."""


def _holder(path):
    try:
        with open(path) as f:
            text = " ".join(f.read().split())
    except OSError:
        text = ""
    return text or "another process (its pid is not written yet)"


@contextlib.contextmanager
def hold(directory, what="--train_dir"):
    """Holds the exclusive lock on `directory` for the `with` block.

    Args:
      directory: str, an existing directory.
      what: how the directory is named in messages (the flag that set it).

    Yields:
      str, the lock file's path.

    Raises:
      LockError: another process holds the lock (names its pid and host), at once:
        the lock is never waited for.
      OSError: the lock file cannot be created (e.g. a read-only directory).
    """
    path = os.path.join(directory, LOCK_FILENAME)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise LockError(f"{what}={directory} is in use by {_holder(path)}; wait for that "
                            f"run to end (or stop it), or use another {what}") from None
        started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on host {socket.gethostname()} (since "
                     f"{started})\n".encode())
        yield path
    finally:
        os.close(fd)  # Releases the lock; the file stays (deleting it would race).
