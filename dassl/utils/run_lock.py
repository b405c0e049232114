"""One run per output directory: an exclusive OS lock held for the whole life of a run.

Two runs writing into one output directory silently replace each other's results.json and
checkpoints (and a second copy of the same command would resume from the first one's checkpoint
while it still trains). A run therefore takes ``fcntl.flock`` on ``<output_dir>/.run.lock``
before it writes anything there, and keeps it until the process ends. The kernel drops the lock
with the process, so a run killed by SIGKILL or the OOM killer never leaves a stale lock behind
and its rerun resumes as usual. The lock file holds who has it (pid, host, start time, command)
for the error message of a second run.
"""
import datetime
import errno
import os
import socket
import sys

__all__ = ["LOCK_FILE_NAME", "OutputDirInUse", "EXIT_LOCKED", "lock_output_dir", "read_lock_holder"]

LOCK_FILE_NAME = ".run.lock"
# Exit status of train.py when another run holds the output directory (EX_TEMPFAIL: "try again
# later"); the sweeps and the launcher skip such a run instead of failing.
EXIT_LOCKED = 75

_held = {}  # output dir -> open lock file (kept open: closing it would drop the lock)


class OutputDirInUse(RuntimeError):
    """Another live process holds the output directory's lock."""


def read_lock_holder(path):
    """Who holds the lock file ``path``: its first line ("pid N on HOST, started T"; "" when
    unreadable). The second line is the holder's command line."""
    try:
        with open(path, errors="replace") as handle:
            return handle.readline().strip()
    except OSError:
        return ""


def lock_output_dir(directory):
    """Take the exclusive lock of ``directory`` for the rest of this process's life.

    Raises :class:`OutputDirInUse` naming the directory and the holder when another process has
    it. Taking it again in the same process is a no-op. On a file system without ``flock``
    support (some network mounts) the run goes on unlocked, with a warning.
    """
    directory = os.path.abspath(directory)
    if directory in _held:
        return
    import fcntl

    path = os.path.join(directory, LOCK_FILE_NAME)
    handle = open(path, "a+")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        holder = read_lock_holder(path) or "another process"
        raise OutputDirInUse(f"output dir {directory} is in use by another run ({holder}); wait for it "
                             "to finish or choose another --output-dir") from None
    except OSError as error:
        if error.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
            handle.close()
            raise
        print(f"Warning: cannot lock {path} ({error.strerror}); nothing stops a second run from writing "
              "into the same output dir", file=sys.stderr)
    started = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()} on {socket.gethostname()}, started {started}\n{' '.join(sys.argv)}\n")
    handle.flush()
    _held[directory] = handle
