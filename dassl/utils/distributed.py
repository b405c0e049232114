"""Multi-process (torchrun / DistributedDataParallel) helpers, kept in one place.

Every other module asks this one whether it runs distributed and which rank it is, instead
of reading environment variables itself. "Distributed" means that a process group has been
initialised (``train.py`` does so only when ``torchrun`` launched it), so code that merely
imports the project, the tests included, sees a single process: rank 0 of a world of 1, and
every collective below is a no-op that returns its input.

Collectives go through the device the backend needs: CPU tensors for gloo, the current CUDA
device for NCCL. Callers pass and receive tensors on their own device.
"""
import contextlib
import logging
import os
import random
import sys

import numpy as np
import torch
import torch.distributed as dist

__all__ = [
    "TORCHRUN_VARIABLES",
    "launched_by_torchrun",
    "init_distributed",
    "destroy_distributed",
    "exit_process",
    "is_distributed",
    "rank",
    "local_rank",
    "world_size",
    "is_main_process",
    "barrier",
    "main_process_first",
    "all_reduce",
    "broadcast_int",
    "all_gather_variable",
    "gather_in_index_order",
    "global_batch_loss_scale",
    "derive_seed",
    "shared_seed",
    "silence_stdout_on_other_ranks",
]

# What torchrun (torch.distributed.run) sets for every worker it starts.
TORCHRUN_VARIABLES = ("WORLD_SIZE", "RANK", "LOCAL_RANK")

_REDUCE_OPS = {"sum": "SUM", "max": "MAX", "min": "MIN"}

# The seed every rank agreed on when the config leaves SEED unset (see shared_seed).
_shared_seed = None

# True once this process joined a process group: the backend's threads then run until the
# process ends (see exit_process).
_joined_process_group = False


def launched_by_torchrun(environ=None):
    """True when the process was started by torchrun (WORLD_SIZE, RANK and LOCAL_RANK set),
    also for ``--nproc_per_node=1``."""
    environ = os.environ if environ is None else environ
    return all(name in environ for name in TORCHRUN_VARIABLES)


def init_distributed(device_type):
    """Join the process group torchrun describes (``env://``); return the backend name.

    NCCL for CUDA devices, gloo otherwise. On CUDA the process first binds to GPU
    ``LOCAL_RANK`` so that NCCL and every later ``.cuda()`` use that device.
    """
    global _joined_process_group
    backend = "nccl" if device_type == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend=backend, init_method="env://")
    _joined_process_group = True
    return backend


def destroy_distributed(wait_for_peers=False):
    """Leave the process group, if one was initialised.

    ``wait_for_peers=True`` is for a rank whose run finished: a barrier first, so that no rank
    tears down while another still runs a collective. Keep it False after an error: the other
    ranks may be inside a different collective, where the barrier would wait (up to the group's
    timeout) instead of letting this rank exit and torchrun stop the others.

    The backend's threads survive this call (gloo's worker threads stop only when the last
    reference to the group goes, and DistributedDataParallel holds one), so end the process
    with :func:`exit_process`.
    """
    if not is_distributed():
        return
    try:
        if wait_for_peers:
            barrier()
    finally:
        dist.destroy_process_group()


def exit_process(code=0):
    """End the process with exit status ``code``, like ``sys.exit(code)``; call it last.

    A process that joined a process group flushes its output and leaves through ``os._exit``,
    skipping the interpreter's teardown, which is not safe with the backend's threads still
    running: gloo frees each finished collective on one of its worker threads, and freeing a
    tensor or state that Python knew takes the GIL. CPython (3.11 here) ends a thread that
    gets the GIL after finalization has begun with ``pthread_exit``, whose unwinding through
    the C++ destructor calls ``std::terminate``: "terminate called without an active
    exception", SIGABRT, and torchrun reports a finished run (results.json written) as failed.
    A rare race (a worker delayed until the main thread exits), seen on a loaded machine;
    ``tools/stress_torchrun.py`` checks it (docs/DEVELOPING.md).

    Without a process group this is ``sys.exit(code)``.
    """
    if not _joined_process_group:
        sys.exit(code)
    if code is None:
        code = 0
    elif not isinstance(code, int):  # as sys.exit: print the message, status 1
        print(code, file=sys.stderr)
        code = 1
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):  # a closed stream or a broken pipe: nothing left to save
            pass
    os._exit(code)


def is_distributed():
    """True when a torch.distributed process group is initialised."""
    return dist.is_available() and dist.is_initialized()


def rank():
    """Global rank of this process (0 without a process group)."""
    return dist.get_rank() if is_distributed() else 0


def local_rank():
    """Rank of this process on its machine (torchrun's LOCAL_RANK; 0 when unset)."""
    return int(os.environ.get("LOCAL_RANK", 0))


def world_size():
    """Number of processes (1 without a process group)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main_process():
    """True on rank 0, the only rank that writes files and prints."""
    return rank() == 0


def _comm_device():
    # NCCL only moves CUDA tensors; gloo works on CPU tensors.
    if is_distributed() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier():
    """Wait until every rank got here (no-op without a process group)."""
    if not is_distributed():
        return
    if dist.get_backend() == "nccl":
        # Naming the device avoids NCCL guessing it (and warning about the guess).
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


@contextlib.contextmanager
def main_process_first():
    """Run the block on rank 0 before the other ranks enter it.

    For work that writes a cache (a download, a few-shot selection) that the other ranks
    then read instead of writing it concurrently. Without a process group it only runs
    the block. If rank 0 fails inside, torchrun stops the waiting ranks.
    """
    distributed = is_distributed()
    if distributed and not is_main_process():
        barrier()
    yield
    if distributed and is_main_process():
        barrier()


def all_reduce(tensor, op="sum"):
    """``tensor`` reduced element-wise over all ranks (``op``: sum, max or min), as a new
    tensor on ``tensor``'s device; ``tensor`` itself is left untouched."""
    if op not in _REDUCE_OPS:
        raise ValueError(f"all_reduce: op must be one of {', '.join(_REDUCE_OPS)}, got {op!r}")
    if not is_distributed():
        return tensor.clone()
    buffer = tensor.detach().to(_comm_device(), copy=True)
    dist.all_reduce(buffer, op=getattr(dist.ReduceOp, _REDUCE_OPS[op]))
    return buffer.to(tensor.device)


def broadcast_int(value, src=0):
    """Rank ``src``'s ``value`` (a Python int) on every rank."""
    if not is_distributed():
        return int(value)
    buffer = torch.tensor([int(value)], dtype=torch.int64, device=_comm_device())
    dist.broadcast(buffer, src=src)
    return int(buffer.item())


def all_gather_variable(tensor):
    """Every rank's ``tensor``, as a list indexed by rank.

    The tensors may differ in their first dimension (a rank may even hold none); the other
    dimensions and the dtype must agree. They are padded to the longest for the collective
    and cut back afterwards.
    """
    if not is_distributed():
        return [tensor]
    device = _comm_device()
    local = tensor.detach().to(device)
    length = torch.tensor([local.shape[0]], dtype=torch.int64, device=device)
    lengths = [torch.zeros_like(length) for _ in range(world_size())]
    dist.all_gather(lengths, length)
    lengths = [int(n.item()) for n in lengths]
    longest = max(lengths)
    if longest == 0:
        return [tensor[:0].clone() for _ in lengths]
    padded = local.new_zeros((longest, *local.shape[1:]))
    padded[: local.shape[0]] = local
    gathered = [torch.empty_like(padded) for _ in lengths]
    dist.all_gather(gathered, padded)
    return [part[:n].to(tensor.device) for part, n in zip(gathered, lengths)]


def gather_in_index_order(index, *tensors):
    """Gather per-sample tensors from all ranks and order them by ``index``.

    ``index`` (1-D, int64) holds the dataset position of each local sample; ``tensors`` have
    one row per local sample. Returns ``(index, *tensors)`` over the samples of every rank,
    sorted by dataset position (a stable sort, so repeated positions keep rank order). Each
    rank gets the same result, which a single process that saw every sample in dataset
    order would have had.
    """
    for t in tensors:
        if t.shape[0] != index.shape[0]:
            raise ValueError(
                f"gather_in_index_order: {index.shape[0]} indices but a tensor with {t.shape[0]} rows"
            )
    index = torch.cat(all_gather_variable(index))
    tensors = [torch.cat(all_gather_variable(t)) for t in tensors]
    order = torch.sort(index, stable=True).indices
    return (index[order], *(t[order] for t in tensors))


def global_batch_loss_scale(n_local, n_global):
    """Factor for this rank's mean loss when a global batch of ``n_global`` images is split
    over the ranks, this one holding ``n_local``.

    DDP averages gradients over the W ranks: (1/W) * sum_r grad(L_r), where L_r is rank r's
    mean loss over its n_r images. The global-batch mean loss has gradient
    sum_r (n_r / N) * grad(L_r). Scaling each L_r by n_r * W / N makes the two equal; the
    factor is 1 whenever every rank holds N / W images.
    """
    if n_local < 1 or n_global < n_local:
        raise ValueError(f"need 1 <= n_local <= n_global, got n_local={n_local}, n_global={n_global}")
    return n_local * world_size() / n_global


def derive_seed(*keys):
    """A 32-bit seed that depends on all of ``keys`` (non-negative ints).

    Used for the per-epoch sampling order (seed, epoch) and the per-rank augmentation
    streams (seed, epoch, rank, ...): a hash-quality mix (NumPy's SeedSequence), so that
    neighbouring epochs or ranks do not get related streams as ``seed + epoch`` would.
    """
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1)[0])


def shared_seed(seed):
    """``seed`` if it is fixed (>= 0); otherwise one random seed drawn on rank 0 and
    broadcast, the same value on every call.

    All ranks must sample the same few-shot subset and the same batch order, which needs a
    common seed even when the user did not fix one.
    """
    global _shared_seed
    if seed is not None and seed >= 0:
        return int(seed)
    if _shared_seed is None:
        _shared_seed = broadcast_int(random.SystemRandom().randrange(2**31))
    return _shared_seed


def silence_stdout_on_other_ranks():
    """Send stdout of every rank but 0 to /dev/null (stderr stays, so errors still show).

    Rank 0 prints the run's log; the other ranks would only repeat it.
    """
    if not is_main_process():
        sys.stdout = open(os.devnull, "w")
