"""Files that appear whole or not at all: written beside their target, flushed to disk, then
renamed onto it (``os.replace`` is atomic within one file system). A reader never sees half a
file, and a write that fails (an exception, a full disk) leaves the old file, or none, and no
temporary behind. Only a crash of the machine itself may leave a ``.<name>.<id>.tmp`` file.
"""
import contextlib
import os
import secrets


def temporary_beside(path):
    """A new, empty file next to ``path`` (same folder, so same file system), created with the
    permissions a plain ``open(path, "w")`` gives (0666 less the umask), and its path."""
    folder, name = os.path.split(os.path.abspath(os.fspath(path)))
    while True:
        tmp = os.path.join(folder, f".{name}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp


@contextlib.contextmanager
def _replacing(path, tmp, sync):
    try:
        yield
        if sync:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


@contextlib.contextmanager
def atomic_path(path):
    """A temporary path beside ``path`` for writers that want a file name (mrcfile, numpy):
    when the block ends without error the file is synced to disk and renamed onto ``path``;
    otherwise it is removed and ``path`` is left as it was."""
    path = os.fspath(path)
    tmp = temporary_beside(path)
    with _replacing(path, tmp, sync=True):
        yield tmp


@contextlib.contextmanager
def atomic_write(path, mode="w", **open_args):
    """``open(path, mode)`` made atomic: the file object writes a temporary beside ``path``,
    which replaces ``path`` only when the block ends without error. ``mode``: "w" or "wb"."""
    if mode not in ("w", "wb", "wt"):
        raise ValueError(f"atomic_write makes a new file: mode 'w' or 'wb', not {mode!r}")
    path = os.fspath(path)
    tmp = temporary_beside(path)
    with _replacing(path, tmp, sync=False):
        with open(tmp, mode, **open_args) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
