"""Deterministic fault injection for the reliability tests (test-only; inert by default).

Crash-safety claims ("a run killed while it writes a checkpoint resumes exactly") are only
worth something if the crash can be placed exactly. Sending a signal from outside races with
the program; instead, a few named places in the code call :func:`fault_point`, and the
environment variable ``PROMPTCLIP_FAULT`` tells the process to fail at the N-th call of one
of them::

    PROMPTCLIP_FAULT="checkpoint_write:2"          # SIGKILL itself at the 2nd checkpoint write
    PROMPTCLIP_FAULT="eval_batch:3:kill"           # the same, spelled out
    PROMPTCLIP_FAULT="checkpoint_write:1:enospc"   # raise OSError(ENOSPC) there ("disk full")

Several specs may be given, separated by commas. Counts start at 1 and cover the whole
process. The points (see ``FAULT_POINTS`` and docs/RELIABILITY.md):

* ``train_batch``: start of every training step, after its batch was loaded;
* ``eval_batch``: start of every evaluation batch (validation and test alike);
* ``checkpoint_write``: inside :func:`dassl.utils.atomic_torch_save`, after ``torch.save``
  has written into the temporary file (part of it may still sit in the write buffer) and
  before the file is flushed, fsync'ed and renamed to its real name. Every checkpoint file
  (``model.pth.tar-N``, ``model-best.pth.tar``) counts, and so does ``cmat.pt`` with
  ``TEST.COMPUTE_CMAT``.

The variable is read once, at import. When it is unset, :func:`fault_point` returns after a
single truth test, so production runs pay nothing measurable.
"""
import errno
import os
import signal
import sys

__all__ = ["FAULT_POINTS", "FAULT_ENV", "configure_from_environment", "fault_point", "parse_fault_spec"]

FAULT_ENV = "PROMPTCLIP_FAULT"
FAULT_POINTS = ("train_batch", "eval_batch", "checkpoint_write")
FAULT_ACTIONS = ("kill", "enospc")


def parse_fault_spec(text):
    """``{point: (count, action)}`` from a ``PROMPTCLIP_FAULT`` value ("" gives ``{}``).

    Raises ``ValueError`` for an unknown point or action or a count below 1, so that a typo in
    a test does not silently run without the fault.
    """
    plan = {}
    for spec in filter(None, (part.strip() for part in (text or "").split(","))):
        fields = spec.split(":")
        if len(fields) not in (2, 3) or not fields[1].isdigit() or int(fields[1]) < 1:
            raise ValueError(f"{FAULT_ENV}: bad spec {spec!r}; expected point:count[:action] with count >= 1")
        point, count = fields[0], int(fields[1])
        action = fields[2] if len(fields) == 3 else "kill"
        if point not in FAULT_POINTS:
            raise ValueError(f"{FAULT_ENV}: unknown fault point {point!r}; known: {', '.join(FAULT_POINTS)}")
        if action not in FAULT_ACTIONS:
            raise ValueError(f"{FAULT_ENV}: unknown action {action!r}; known: {', '.join(FAULT_ACTIONS)}")
        plan[point] = (count, action)
    return plan


_PLAN = {}
_CALLS = {}


def configure_from_environment():
    """(Re)read ``PROMPTCLIP_FAULT`` and reset the call counts. Runs at import; a process that
    changes its environment afterwards (the tests' fork server) calls it again."""
    global _PLAN
    _PLAN = parse_fault_spec(os.environ.get(FAULT_ENV, ""))
    _CALLS.clear()


configure_from_environment()


def fault_point(name):
    """Mark a place where a fault can be injected; does nothing unless ``PROMPTCLIP_FAULT``
    names ``name`` and this is the call it counts to.

    On that call the process either kills itself with SIGKILL (no cleanup handler, ``finally``
    block or buffer flush runs, as with the OOM killer or a pulled plug), or raises
    ``OSError(ENOSPC)`` as a full disk would.
    """
    if not _PLAN:
        return
    _CALLS[name] = _CALLS.get(name, 0) + 1
    count, action = _PLAN.get(name, (None, None))
    if _CALLS[name] != count:
        return
    # One line on stderr (line-buffered, and copied into log.txt) says where the run stopped.
    print(f"fault injection: {action} at {name} #{count}", file=sys.stderr, flush=True)
    if action == "enospc":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    os.kill(os.getpid(), signal.SIGKILL)
