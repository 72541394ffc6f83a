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


def is_same_file(input_path, output_path):
    """True when writing `output_path` would replace `input_path`: the same path, or two
    paths (symlinks, hard links, `..`) to one file."""
    if os.path.realpath(input_path) == os.path.realpath(output_path):
        return True
    try:
        return os.path.samefile(input_path, output_path)
    except OSError:  # One of them does not exist: they cannot be the same file.
        return False


def ensure_writable_dir(path):
    """Creates directory `path` if needed and checks that a file can be created in it.

    Commands call it before their slow work, so that a read-only or un-creatable output
    is a one-line error at once rather than a traceback at the end.

    Raises:
      NotADirectoryError: `path` (or a parent) exists and is not a directory.
      OSError: the directory cannot be created or written (e.g. PermissionError).
    """
    if os.path.exists(path) and not os.path.isdir(path):
        raise NotADirectoryError(f"{path} exists and is not a directory")
    os.makedirs(path, exist_ok=True)
    probe = os.path.join(path, f".tmp-write-test-{secrets.token_hex(6)}")
    with open(probe, "xb"):
        pass
    os.remove(probe)
