"""An exclusive lock on a directory, so that two trainers never share a train_dir.

Standard library only. The lock is `flock(2)` on a small file inside the directory:
the kernel releases it when the holder's file descriptor closes, which includes the
holder dying from kill -9, so no stale lock ever blocks the next run and no
"is that pid still alive?" guessing is needed. The file keeps the holder's pid and
host, which the refusal names. (flock is advisory and local to one machine; on
network filesystems that do not propagate it, two hosts can still both take it.)

The lock file has a fixed name, so it is opened without following a symlink
(O_NOFOLLOW), without truncating on open, and used only when the descriptor is a
regular file with one link: a symlink or hard link planted there (a train_dir under
/tmp) would otherwise make the trainer overwrite its target with the pid line. A
directory that another user can write (world-writable, or owned by another user) is
refused outright: everything else the trainer writes there (checkpoints, summaries)
could be redirected the same way.
"""
import contextlib
import datetime
import errno
import fcntl
import os
import socket
import stat

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
    problem = directory_problem(directory)
    if problem:
        raise LockError(f"{what}={directory} {problem}: another user could plant links "
                        "there that redirect what this run writes; use a directory only "
                        "you can write")
    path = os.path.join(directory, LOCK_FILENAME)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
                     | os.O_CLOEXEC, 0o644)
    except OSError as e:
        if e.errno != errno.ELOOP:
            raise
        raise LockError(f"{what}={directory}: its lock file {path} is a symlink; remove it "
                        "(the trainer never creates one)") from None
    try:
        info = os.fstat(fd)  # The descriptor's file: no race with a later swap of the path.
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            kind = ("has other hard links" if stat.S_ISREG(info.st_mode)
                    else "is not a regular file")
            raise LockError(f"{what}={directory}: its lock file {path} {kind}; remove it "
                            "(the trainer creates a plain file)")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise LockError(f"{what}={directory} is in use by {_holder(path)}; wait for that "
                            f"run to end (or stop it), or use another {what}") from None
        started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
        # Only now, holding the lock on a checked private file: the previous holder's line.
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on host {socket.gethostname()} (since "
                     f"{started})\n".encode())
        yield path
    finally:
        os.close(fd)  # Releases the lock; the file stays (deleting it would race).


def directory_problem(directory):
    """Why `directory` is unsafe for files with fixed names, or None.

    Unsafe: writable by every user (like /tmp itself), or owned by a user other than
    this process's (or root). Either can plant a symlink or hard link at a name the
    trainer writes.
    """
    info = os.stat(directory)
    if info.st_uid not in (os.geteuid(), 0):
        return f"is owned by another user (uid {info.st_uid})"
    if info.st_mode & stat.S_IWOTH:
        return f"is writable by every user (mode {stat.S_IMODE(info.st_mode):04o})"
    return None
