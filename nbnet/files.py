"""Reading and writing files safely. Writes go to a temporary file in the target directory,
flushed and fsynced, then renamed over the target, and the directory fsynced (so the rename
itself survives a power cut). A crash, a kill -9 or Ctrl-C at any point leaves the old file (or none)
or the new one, never half a file (tests/test_chaos.py kills runs at random points); a kill
before the rename can leave the temporary `.NAME.PID.XXXX.SUFFIX` behind, which the next write
of NAME deletes once process PID is gone. Reads of .npz files check every array's declared
size against the file's first (check_npz_sizes)."""

import glob
import os
import tempfile
import zipfile
import zlib
from pathlib import Path
from tokenize import TokenError

import numpy as np


class OutputError(Exception):
    """An output file cannot be written or read."""


def atomic_write(path, write):
    """Call write(temporary_path), fsync it, rename the temporary file onto `path`, fsync the directory."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_leftovers(path)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=path.suffix)
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
    _sync_directory(path.parent)
    return path


def _remove_leftovers(path):
    """Delete the temporary files of earlier writes of `path` whose process no longer runs (it was
    killed before its rename); those of live processes (another run writing the same file) stay.
    POSIX only: elsewhere os.kill(pid, 0) would end the process instead of asking about it."""
    if os.name != "posix":
        return
    for leftover in path.parent.glob(f".{glob.escape(path.name)}.*.*{glob.escape(path.suffix)}"):
        pid = leftover.name[len(path.name) + 2:].split(".")[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)  # (signal 0: only asks whether the process exists)
        except ProcessLookupError:
            leftover.unlink(missing_ok=True)
        except OSError:  # (PermissionError: another user's live process), or no way to tell
            pass


def _sync_directory(directory):
    """fsync a directory, so that a rename in it is on disk (where the system allows it)."""
    try:
        handle = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass  # (some file systems refuse to sync a directory; the rename is still done)
    finally:
        os.close(handle)


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Deflate cannot expand data more than about 1032 times: a compressed file whose contents
# declare more than this many bytes per byte of file is corrupt (or a decompression bomb).
MAX_DEFLATE_RATIO = 1032

# What reading a damaged .npy or .npz file can raise (numpy parses the .npy header with
# tokenize and ast: TokenError, SyntaxError; a damaged zip: BadZipFile, zlib.error, EOFError).
NUMPY_FILE_ERRORS = (OSError, ValueError, EOFError, SyntaxError, TokenError, zipfile.BadZipFile, zlib.error,
                     NotImplementedError)


def load_npz(path):
    """{name: array} of a .npz file, loaded with allow_pickle=False after check_npz_sizes.
    Raises FileNotFoundError, or one of NUMPY_FILE_ERRORS for a file that is not a readable .npz."""
    check_npz_sizes(path)
    with np.load(path, allow_pickle=False) as content:
        return {name: content[name] for name in content.files}


def check_npz_sizes(path):
    """Refuse a file whose arrays would need more memory than its size can account for (a
    decompression bomb, or a corrupt .npy header declaring a huge shape), before np.load
    allocates them: every member's declared size must fit the file, and every array's header
    must fit its member."""
    limit = MAX_DEFLATE_RATIO * os.path.getsize(path) + 4096
    with zipfile.ZipFile(path) as archive:
        for member in archive.infolist():
            if member.file_size > limit:
                raise ValueError(f"{member.filename} declares {member.file_size} bytes")
            with archive.open(member) as stream:
                version = np.lib.format.read_magic(stream)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, _, dtype = read_header(stream)
                if dtype.hasobject:
                    raise ValueError(f"{member.filename} holds Python objects")
                if int(np.prod(shape, dtype=object)) * dtype.itemsize > member.file_size:
                    raise ValueError(f"{member.filename} declares {shape} {dtype}, more than it holds")
