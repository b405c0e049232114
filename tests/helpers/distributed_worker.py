"""A worker for the multi-process unit tests of tests/test_distributed.py.

It runs in processes started with the "spawn" method, which import this module again:
it therefore imports only torch and the light parts of dassl (no torchvision), so that
each worker starts in a couple of seconds.
"""
import datetime
import os
import traceback

import torch
import torch.distributed as dist

DATASET_SIZE = 11  # odd, so that the two shards differ in size
NUM_CLASSES = 4


def dataset_logits_and_labels():
    """The same deterministic 'model outputs' and labels for the whole dataset on every rank."""
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(DATASET_SIZE, NUM_CLASSES, generator=generator)
    labels = torch.randint(NUM_CLASSES, (DATASET_SIZE,), generator=generator)
    return logits, labels


def classification_cfg():
    """Dassl's default config (the evaluator reads only TEST.* and DATASET.*)."""
    from dassl.config import get_cfg_default

    cfg = get_cfg_default()
    cfg.TEST.OPENWORLD_METRICS = True
    return cfg


def collective_checks(rank, world):
    """Everything the parent test asserts, computed on one rank (returns a dict)."""
    from dassl.evaluation import build_evaluator
    from dassl.utils import distributed as dist_utils

    out = {"rank": dist_utils.rank(), "world": dist_utils.world_size(), "main": dist_utils.is_main_process()}

    # Strided shards (ShardedSampler with block_size 1), in a scrambled local order.
    shard = torch.arange(DATASET_SIZE)[rank::world].flip(0)
    payload = torch.stack([shard * 10, -shard], dim=1)
    out["gathered"] = dist_utils.gather_in_index_order(shard, shard * 100, payload)

    # Variable lengths, one rank empty.
    out["variable"] = dist_utils.all_gather_variable(torch.arange(rank * 3, rank * 6, dtype=torch.int64))

    # The evaluator: each rank processes its shard in batches of 2.
    logits, labels = dataset_logits_and_labels()
    evaluator = build_evaluator(classification_cfg())
    evaluator.reset()
    indices = torch.arange(DATASET_SIZE)[rank::world]
    for start in range(0, len(indices), 2):
        batch = indices[start:start + 2]
        evaluator.process(logits[batch], labels[batch])
    evaluator.gather_from_ranks(indices)
    out["metrics"] = dict(evaluator.evaluate())
    out["y_true"] = torch.cat(evaluator._y_true)
    out["y_pred"] = torch.cat(evaluator._y_pred)

    # A non-finite loss on one rank makes the all-reduced loss sum non-finite on all ranks.
    local = torch.tensor([2.0, float("nan") if rank == 1 else 1.5], dtype=torch.float64)
    out["reduced_loss_sum"] = float(dist_utils.all_reduce(local)[1])

    # Uneven split of a partial global batch of 5 (3 + 2): with each rank's mean loss scaled,
    # the rank-averaged gradient (what DDP computes) is the gradient of the global-batch mean.
    torch.manual_seed(0)
    model = torch.nn.Linear(3, NUM_CLASSES)
    generator = torch.Generator().manual_seed(1)
    x, y = torch.randn(5, 3, generator=generator), torch.randint(NUM_CLASSES, (5,), generator=generator)
    part = slice(0, 3) if rank == 0 else slice(3, 5)
    n_local = part.stop - part.start
    loss = torch.nn.functional.cross_entropy(model(x[part]), y[part])
    (loss * dist_utils.global_batch_loss_scale(n_local, 5)).backward()
    out["averaged_grad"] = dist_utils.all_reduce(model.weight.grad) / world
    model.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    out["reference_grad"] = model.weight.grad.clone()
    out["scale"] = dist_utils.global_batch_loss_scale(n_local, 5)

    out["broadcast"] = dist_utils.broadcast_int(41 + rank)
    dist_utils.barrier()
    return out


def run(rank, world, workdir):
    """Entry point for ``torch.multiprocessing.start_processes``: join a gloo group through
    a file store (no network), run the checks and save them to ``workdir/rank<r>.pt``."""
    os.environ["LOCAL_RANK"] = str(rank)
    dist.init_process_group("gloo", init_method=f"file://{os.path.join(workdir, 'store')}", rank=rank,
                            world_size=world, timeout=datetime.timedelta(seconds=60))
    try:
        result = collective_checks(rank, world)
    except Exception:  # the parent reports it; a bare crash would only say "exit code 1"
        result = {"error": traceback.format_exc()}
    finally:
        dist.destroy_process_group()
    torch.save(result, os.path.join(workdir, f"rank{rank}.pt"))
