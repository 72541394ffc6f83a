"""Atomic file output: a file is either complete or not there at all.

Standard library only. Every command writes through `atomic_output`, so an
interrupted run, a crash or a bad input never leaves a half-written file behind.
"""
import contextlib
import os
import secrets


@contextlib.contextmanager
def atomic_output(path):
    """Yields a temporary path next to `path`; renames it to `path` if the block succeeds.

    The temporary name keeps `path`'s basename (and so its suffix, which some
    writers use to pick a format). On any exception the temporary file is removed
    and `path` is left untouched. The file's permissions follow the umask, as for
    a plain `open()`; the directory is created if needed.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".tmp-{secrets.token_hex(6)}-{os.path.basename(path)}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_bytes_atomic(path, data):
    """Writes `data` (bytes) to `path` atomically."""
    with atomic_output(path) as tmp:
        with open(tmp, "xb") as f:
            f.write(data)
