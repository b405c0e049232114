"""Index samplers for the data loaders (Dassl's names and batching semantics).

All randomness comes from torch: ``generator`` when one is given, otherwise torch's global
RNG. So saving and restoring ``torch.get_rng_state()`` at an epoch boundary reproduces the
next epoch's order exactly. (Dassl's domain/class samplers draw from Python's ``random``; the
orders therefore differ from Dassl's for the same seed, while the batch composition rules
are the same.)

An epoch's length is known before iterating: it is computed in closed form where the rule
allows, and otherwise by simulating one epoch with a private, fixed-seed generator, which
leaves the global RNG untouched.

Multi-process training does not change these samplers: :class:`DistributedBatchSampler`
draws each epoch's global order from one of them with a generator seeded from
``(seed, epoch)`` and hands every rank its slice of each global batch;
:class:`ShardedSampler` splits an evaluation order between the ranks.
"""
from collections import OrderedDict

import torch
from torch.utils.data.sampler import RandomSampler, Sampler, SequentialSampler

from dassl.utils import distributed as dist_utils

SAMPLER_TYPES = (
    "RandomSampler",
    "SequentialSampler",
    "RandomDomainSampler",
    "SeqDomainSampler",
    "RandomClassSampler",
)

# Seed of the private generator used only to estimate epoch lengths.
_LENGTH_ESTIMATE_SEED = 0


def _group_indices(data_source, attribute):
    """Map each value of ``item.<attribute>`` (in first-seen order) to the indices holding it."""
    groups = OrderedDict()
    for index, item in enumerate(data_source):
        groups.setdefault(getattr(item, attribute), []).append(index)
    return groups


def _shuffled(indices, generator):
    """``indices`` (a list) in random order, as a list."""
    order = torch.randperm(len(indices), generator=generator).tolist()
    return [indices[i] for i in order]


class _GroupedSampler(Sampler):
    """Base for samplers that build an epoch's index list with ``_epoch_indices(generator)``."""

    def __init__(self, data_source, generator=None):
        self.data_source = data_source
        self.generator = generator
        self._length = None

    def _epoch_indices(self, generator):
        raise NotImplementedError

    def __iter__(self):
        return iter(self._epoch_indices(self.generator))

    def __len__(self):
        if self._length is None:
            estimator = torch.Generator().manual_seed(_LENGTH_ESTIMATE_SEED)
            self._length = len(self._epoch_indices(estimator))
        return self._length


class RandomDomainSampler(_GroupedSampler):
    """Minibatches of ``n_domain`` randomly chosen domains with ``batch_size // n_domain``
    images each.

    The epoch ends after the round in which a chosen domain is left with fewer images than
    one batch needs from it; images within a domain are drawn without replacement.

    Args:
        data_source: list of Datum-like items with a ``domain`` attribute.
        batch_size: images per minibatch; must be divisible by ``n_domain``.
        n_domain: domains per minibatch; ``None`` or ``<= 0`` means all domains.
        generator: optional ``torch.Generator``; default is torch's global RNG.
    """

    def __init__(self, data_source, batch_size, n_domain, generator=None):
        super().__init__(data_source, generator)
        self.domain_to_indices = _group_indices(data_source, "domain")
        self.domains = list(self.domain_to_indices)
        if n_domain is None or n_domain <= 0:
            n_domain = len(self.domains)
        if n_domain > len(self.domains):
            raise ValueError(f"RandomDomainSampler: n_domain={n_domain} but the data has only {len(self.domains)} domains")
        if batch_size % n_domain != 0:
            raise ValueError(f"RandomDomainSampler: batch_size={batch_size} is not divisible by n_domain={n_domain}")
        self.batch_size = batch_size
        self.n_domain = n_domain
        self.n_img_per_domain = batch_size // n_domain
        _require_group_size(self.domain_to_indices, self.n_img_per_domain, "RandomDomainSampler", "domain")

    def _epoch_indices(self, generator):
        queues = {d: _shuffled(idx, generator) for d, idx in self.domain_to_indices.items()}
        taken = dict.fromkeys(self.domains, 0)
        per_domain = self.n_img_per_domain
        indices = []
        while True:
            chosen = torch.randperm(len(self.domains), generator=generator)[: self.n_domain].tolist()
            exhausted = False
            for domain in (self.domains[i] for i in chosen):
                start = taken[domain]
                indices.extend(queues[domain][start:start + per_domain])
                taken[domain] = start + per_domain
                exhausted |= len(queues[domain]) - taken[domain] < per_domain
            if exhausted:
                return indices


class SeqDomainSampler(_GroupedSampler):
    """Minibatches with ``batch_size // n_domains`` random images from every domain, domains
    in sorted order; the epoch ends when some domain cannot fill another batch.

    Args:
        data_source: list of Datum-like items with a ``domain`` attribute.
        batch_size: images per minibatch; must be divisible by the number of domains.
        generator: optional ``torch.Generator``; default is torch's global RNG.
    """

    def __init__(self, data_source, batch_size, generator=None):
        super().__init__(data_source, generator)
        self.domain_to_indices = _group_indices(data_source, "domain")
        self.domains = sorted(self.domain_to_indices)
        if batch_size % len(self.domains) != 0:
            raise ValueError(
                f"SeqDomainSampler: batch_size={batch_size} is not divisible by the number of domains ({len(self.domains)})"
            )
        self.batch_size = batch_size
        self.n_domain = len(self.domains)
        self.n_img_per_domain = batch_size // self.n_domain
        _require_group_size(self.domain_to_indices, self.n_img_per_domain, "SeqDomainSampler", "domain")
        n_rounds = min(len(idx) for idx in self.domain_to_indices.values()) // self.n_img_per_domain
        self._length = n_rounds * batch_size

    def _epoch_indices(self, generator):
        per_domain = self.n_img_per_domain
        n_rounds = self._length // self.batch_size
        # Row d holds domain d's first n_rounds * per_domain shuffled images; reading the
        # (domain, round, image) block round-major interleaves one slice per domain per round.
        per_domain_images = torch.tensor(
            [_shuffled(self.domain_to_indices[d], generator)[: n_rounds * per_domain] for d in self.domains],
            dtype=torch.int64,
        )
        blocks = per_domain_images.view(self.n_domain, n_rounds, per_domain)
        return blocks.transpose(0, 1).reshape(-1).tolist()


class RandomClassSampler(_GroupedSampler):
    """Minibatches of ``batch_size // n_ins`` random classes with ``n_ins`` images each.

    Each class is cut into chunks of ``n_ins`` shuffled images (a class with fewer images is
    padded by drawing with replacement to one chunk; a remainder smaller than ``n_ins`` is
    dropped). Batches take one chunk from each of the chosen classes until fewer classes
    with chunks left remain than a batch needs.

    Args:
        data_source: list of Datum-like items with a ``label`` attribute.
        batch_size: images per minibatch; must be at least ``n_ins``.
        n_ins: images per class in a minibatch.
        generator: optional ``torch.Generator``; default is torch's global RNG.
    """

    def __init__(self, data_source, batch_size, n_ins, generator=None):
        if n_ins <= 0 or batch_size < n_ins:
            raise ValueError(f"RandomClassSampler: need 0 < n_ins <= batch_size, got n_ins={n_ins}, batch_size={batch_size}")
        super().__init__(data_source, generator)
        self.batch_size = batch_size
        self.n_ins = n_ins
        self.ncls_per_batch = batch_size // n_ins
        self.label_to_indices = _group_indices(data_source, "label")
        self.labels = list(self.label_to_indices)
        if len(self.labels) < self.ncls_per_batch:
            raise ValueError(
                f"RandomClassSampler: a batch needs {self.ncls_per_batch} classes "
                f"(batch_size={batch_size} // n_ins={n_ins}) but the data has {len(self.labels)}"
            )

    def _class_chunks(self, indices, generator):
        if len(indices) < self.n_ins:
            picks = torch.randint(len(indices), (self.n_ins,), generator=generator).tolist()
            indices = [indices[i] for i in picks]
        shuffled = _shuffled(indices, generator)
        n_chunks = len(shuffled) // self.n_ins
        return [shuffled[c * self.n_ins:(c + 1) * self.n_ins] for c in range(n_chunks)]

    def _epoch_indices(self, generator):
        chunks = {label: self._class_chunks(self.label_to_indices[label], generator) for label in self.labels}
        available = list(self.labels)
        indices = []
        while len(available) >= self.ncls_per_batch:
            picks = torch.randperm(len(available), generator=generator)[: self.ncls_per_batch].tolist()
            for label in [available[i] for i in picks]:
                indices.extend(chunks[label].pop(0))
                if not chunks[label]:
                    available.remove(label)
        return indices


def _require_group_size(groups, needed, sampler_name, attribute):
    small = {key: len(idx) for key, idx in groups.items() if len(idx) < needed}
    if small:
        raise ValueError(f"{sampler_name}: each {attribute} needs at least {needed} images per batch, but {small} have fewer")


def _rank_and_world(rank, world_size):
    rank = dist_utils.rank() if rank is None else int(rank)
    world_size = dist_utils.world_size() if world_size is None else int(world_size)
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
    return rank, world_size


class DistributedBatchSampler(Sampler):
    """This rank's part of every global training batch (multi-process training).

    Each epoch, ``sampler`` (a single-process sampler from :func:`build_sampler`) yields one
    global index order from a ``torch.Generator`` seeded from ``(seed, epoch)``, so every
    rank computes the same order without communicating. The order is cut into global
    batches of ``batch_size`` with the single-process loader's rule (a last incomplete
    batch is dropped when ``drop_last``), and rank ``r`` takes the r-th contiguous slice of
    each global batch. Concatenating the ranks' slices in rank order therefore gives back
    the global batch, and every rank runs the same number of steps (which DDP needs).

    Full global batches split evenly (``batch_size`` must be divisible by the world size);
    a last partial batch is split as evenly as possible, the first ranks taking one image
    more. Call :meth:`set_epoch` before each epoch: the order depends only on
    ``(seed, epoch)``, so resuming after epoch k continues with the order an uninterrupted
    run would have used.

    Args:
        sampler: single-process sampler; its ``generator`` attribute (when it has one) is
            replaced by the epoch's generator before each epoch.
        batch_size: the global batch size.
        drop_last: drop a last incomplete global batch.
        seed: base seed shared by all ranks (non-negative).
        rank, world_size: this process and the number of processes (default: the current
            process group's).

    Raises:
        ValueError: ``batch_size`` not divisible by ``world_size``, or fewer items per
            epoch than ranks (some rank would get an empty batch).
    """

    def __init__(self, sampler, batch_size, drop_last, seed, rank=None, world_size=None):
        self.rank, self.world_size = _rank_and_world(rank, world_size)
        if batch_size < 1 or batch_size % self.world_size != 0:
            raise ValueError(
                f"global batch size {batch_size} is not divisible by the world size {self.world_size}"
            )
        if seed is None or seed < 0:
            raise ValueError(f"DistributedBatchSampler needs a non-negative seed shared by all ranks, got {seed}")
        self.sampler = sampler
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.seed = int(seed)
        self.epoch = 0
        if len(sampler) < self.world_size:
            raise ValueError(
                f"{len(sampler)} training items cannot be split over {self.world_size} processes "
                "(each needs at least one per step)"
            )

    def set_epoch(self, epoch):
        """Select the order of ``epoch`` (0-based) for the next iteration."""
        self.epoch = int(epoch)

    def epoch_generator(self):
        """The generator behind this epoch's order (seeded from ``(seed, epoch)``)."""
        return torch.Generator().manual_seed(dist_utils.derive_seed(self.seed, self.epoch))

    def global_batches(self):
        """This epoch's global batches (lists of dataset indices), identical on every rank."""
        if hasattr(self.sampler, "generator"):
            self.sampler.generator = self.epoch_generator()
        order = list(self.sampler)
        batches = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        return batches

    def local_slice(self, n_items):
        """``(start, stop)`` of this rank's contiguous part of a global batch of ``n_items``."""
        share, extra = divmod(n_items, self.world_size)
        start = self.rank * share + min(self.rank, extra)
        return start, start + share + (1 if self.rank < extra else 0)

    def __iter__(self):
        for batch in self.global_batches():
            start, stop = self.local_slice(len(batch))
            yield batch[start:stop]

    def __len__(self):
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)


class ShardedSampler(Sampler):
    """This rank's share of ``sampler``'s order for multi-process evaluation: the order is cut
    into blocks of ``block_size`` indices and rank ``r`` takes blocks r, r + W, r + 2W, ...

    The shards are disjoint and together hold every index exactly once: no padding and no
    duplicates, so metrics computed over the gathered predictions equal a single process's.
    With ``block_size`` equal to the loader's batch size every batch a rank evaluates is
    exactly one of the single-process batches, which keeps the predictions identical even
    for a model whose output for an image depends on the rest of its batch. ``block_size``
    1 gives ``indices[rank::world_size]``. A shard may be empty (fewer blocks than ranks).

    Args:
        sampler: the single-process evaluation sampler (usually sequential).
        block_size: indices kept together (the evaluation batch size).
        rank, world_size: this process and the number of processes (default: the current
            process group's).
    """

    def __init__(self, sampler, block_size=1, rank=None, world_size=None):
        self.rank, self.world_size = _rank_and_world(rank, world_size)
        if block_size < 1:
            raise ValueError(f"ShardedSampler: block_size must be >= 1, got {block_size}")
        self.sampler = sampler
        self.block_size = block_size

    def _blocks(self, n):
        starts = range(self.rank * self.block_size, n, self.world_size * self.block_size)
        return [(start, min(start + self.block_size, n)) for start in starts]

    def __iter__(self):
        order = list(self.sampler)
        return iter([i for start, stop in self._blocks(len(order)) for i in order[start:stop]])

    def __len__(self):
        return sum(stop - start for start, stop in self._blocks(len(self.sampler)))


def build_sampler(
    sampler_type,
    cfg=None,
    data_source=None,
    batch_size=32,
    n_domain=0,
    n_ins=16,
    generator=None,
    distributed=False,
):
    """Build the sampler named ``sampler_type`` (a ``cfg.DATALOADER.*.SAMPLER`` value).

    Args:
        sampler_type: one of ``SAMPLER_TYPES``.
        cfg: the config (unused today; kept for Dassl's signature).
        data_source: list of Datum-like items.
        batch_size, n_domain, n_ins: batching parameters of the grouped samplers.
        generator: optional ``torch.Generator`` for all random draws; the default (None)
            uses torch's global RNG, which makes the order resumable from
            ``torch.get_rng_state()``.
        distributed: kept for Dassl's signature. This function builds the single-process
            (global) order only; per-rank sampling wraps that sampler in
            :class:`DistributedBatchSampler` or :class:`ShardedSampler`, which
            ``build_data_loader(distributed=True)`` does. So ``True`` is refused here.

    Raises:
        ValueError: unknown ``sampler_type``.
        NotImplementedError: ``distributed=True``.
    """
    if distributed:
        raise NotImplementedError(
            f"build_sampler builds the global order only (sampler_type={sampler_type!r}); "
            "distributed loaders wrap it: use build_data_loader(distributed=True)"
        )
    if sampler_type == "RandomSampler":
        return RandomSampler(data_source, generator=generator)
    if sampler_type == "SequentialSampler":
        return SequentialSampler(data_source)
    if sampler_type == "RandomDomainSampler":
        return RandomDomainSampler(data_source, batch_size, n_domain, generator=generator)
    if sampler_type == "SeqDomainSampler":
        return SeqDomainSampler(data_source, batch_size, generator=generator)
    if sampler_type == "RandomClassSampler":
        return RandomClassSampler(data_source, batch_size, n_ins, generator=generator)
    raise ValueError(f"unknown sampler type {sampler_type!r}; supported: {', '.join(SAMPLER_TYPES)}")
