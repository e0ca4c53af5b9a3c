"""Writing output files safely: to a temporary file in the target directory, flushed and
fsynced, then renamed over the target. A crash or Ctrl-C midway leaves the old file (or
none), never half a file."""

import os
import tempfile
from pathlib import Path


class OutputError(Exception):
    """An output file cannot be written or read."""


def atomic_write(path, write):
    """Call write(temporary_path), fsync it, then rename the temporary file onto `path`."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
        os.close(handle)
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
    except OSError as error:
        raise OutputError(f"cannot write {path}: {error.strerror}") from None
    try:
        write(temporary)
        with open(temporary, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(temporary, path)
    except OSError as error:
        os.unlink(temporary)
        raise OutputError(f"cannot write {path}: {error.strerror}") from None
    except BaseException:
        os.unlink(temporary)
        raise
    return path


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask
