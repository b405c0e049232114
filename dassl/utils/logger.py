"""Copy everything the program prints into a log file (Dassl's ``setup_logger``)."""
import contextlib
import os.path as osp
import sys
import time

from .distributed import is_main_process
from .tools import describe_write_error, mkdir_if_missing

__all__ = ["Logger", "setup_logger", "close_logger", "write_to_log_file", "progress_stream"]


class Logger:
    """A stream that writes to ``console`` and, when ``fpath`` is given, also appends to that file.

    Installed as ``sys.stdout`` (and ``sys.stderr``) by ``setup_logger``. Unknown attributes
    (``isatty``, ``encoding``, ``fileno``...) come from the console stream so libraries that
    inspect the stream keep working. Closing the logger closes only the file, never the console.
    """

    def __init__(self, fpath=None, console=None):
        self.console = console if console is not None else sys.stdout
        self.file = None
        if fpath is not None:
            mkdir_if_missing(osp.dirname(fpath))
            # Line-buffered: a run killed by SIGKILL or the OOM killer still has in its log
            # every line it printed before, which is what one reads to see where it stopped.
            self.file = open(fpath, "a", buffering=1)

    def _file_is_open(self):
        return self.file is not None and not self.file.closed

    def write(self, msg):
        """Write ``msg`` to the console and, while it is open, to the file.

        A failed write to the file (a full disk) closes the file and raises an ``OSError``
        naming it ("No space left on device while writing .../log.txt"); from then on only the
        console gets the output, so the error line itself can still be printed.
        """
        self.console.write(msg)
        # Code that kept a reference to this stream may still print after close_logger().
        if self._file_is_open():
            self._to_file(self.file.write, msg)

    def flush(self):
        """Flush both streams (the file is flushed to the OS, not fsync'ed: printing stays cheap)."""
        self.console.flush()
        if self._file_is_open():
            self._to_file(self.file.flush)

    def _to_file(self, operation, *args):
        try:
            operation(*args)
        except OSError as error:
            path = self.file.name
            with contextlib.suppress(OSError):
                self.file.close()  # closes the fd even when its final flush fails again
            raise describe_write_error(error, path) from None

    def close(self):
        """Close the log file; the console stays open."""
        if self._file_is_open():
            with contextlib.suppress(OSError):  # a full disk was reported when it happened
                self.file.close()

    def __getattr__(self, name):
        # Only reached for attributes Logger lacks; guard "console" against recursion when an
        # instance is inspected before __init__ has set it.
        if name == "console":
            raise AttributeError(name)
        return getattr(self.console, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


# The loggers installed by the last setup_logger call, so a second call can undo them.
_active_loggers = {}


def close_logger():
    """Restore the original ``sys.stdout``/``sys.stderr`` and close the log file, if any."""
    for stream_name, logger in _active_loggers.items():
        # Only unwind a stream that still points at our logger; someone may have replaced it since.
        if getattr(sys, stream_name) is logger:
            setattr(sys, stream_name, logger.console)
        logger.flush()
        logger.close()
    _active_loggers.clear()


def progress_stream():
    """The console stream for progress bars, or None when no terminal is attached.

    Bars go to the real terminal (never into log.txt): stdout if it is a terminal, else stderr, so
    that a caller filtering stdout through a pipe (scripts/quickstart.sh) still sees them.
    Under torchrun only rank 0 shows bars; the others' would overwrite them on the same terminal.
    """
    if not is_main_process():
        return None
    for stream in (sys.__stdout__, sys.__stderr__):
        if stream is not None and hasattr(stream, "isatty") and stream.isatty():
            return stream
    return None


def setup_logger(output=None, tee_stderr=True):
    """Tee ``sys.stdout`` (and ``sys.stderr`` if ``tee_stderr``) into a log file.

    ``output`` is a directory (the file is ``<output>/log.txt``) or a path ending in ".txt" or
    ".log". If that file already exists, a time stamp is appended to the new file's name
    (``log.txt-YYYY-MM-DD-HH-MM-SS``) so an earlier run's log is never touched. Calling it again
    in the same process replaces the previous tee instead of stacking a second one. Returns the
    path of the log file (``None`` when ``output`` is ``None``, which does nothing).
    """
    if output is None:
        return None
    output = str(output)
    if output.endswith(".txt") or output.endswith(".log"):
        fpath = output
    else:
        fpath = osp.join(output, "log.txt")
    if osp.exists(fpath):
        fpath += time.strftime("-%Y-%m-%d-%H-%M-%S")

    close_logger()
    stdout_logger = Logger(fpath, console=sys.stdout)
    _active_loggers["stdout"] = stdout_logger
    sys.stdout = stdout_logger
    if tee_stderr:
        # Shares the stdout logger's file handle so both streams interleave in print order.
        stderr_logger = Logger(None, console=sys.stderr)
        stderr_logger.file = stdout_logger.file
        _active_loggers["stderr"] = stderr_logger
        sys.stderr = stderr_logger
    return fpath


def write_to_log_file(text):
    """Append ``text`` to the active log file only (not the console); return its path or None."""
    logger = _active_loggers.get("stdout")
    if logger is None or not logger._file_is_open():
        return None
    try:
        logger._to_file(logger.file.write, text)
        logger._to_file(logger.file.flush)
    except OSError:  # e.g. the disk is full: the caller is reporting an error already
        return None
    return logger.file.name
