"""Index samplers for the data loaders (Dassl's names and batching semantics).

All randomness comes from torch: ``generator`` when one is given, otherwise torch's global
RNG. So saving and restoring ``torch.get_rng_state()`` at an epoch boundary reproduces the
next epoch's order exactly. (Dassl's domain/class samplers draw from Python's ``random``; the
orders therefore differ from Dassl's for the same seed, while the batch composition rules
are the same.)

An epoch's length is known before iterating: it is computed in closed form where the rule
allows, and otherwise by simulating one epoch with a private, fixed-seed generator, which
leaves the global RNG untouched.
"""
from collections import OrderedDict

import torch
from torch.utils.data.sampler import RandomSampler, Sampler, SequentialSampler

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
        distributed: hook for multi-process training (each rank would get a disjoint
            shard); not implemented yet.

    Raises:
        ValueError: unknown ``sampler_type``.
        NotImplementedError: ``distributed=True``.
    """
    if distributed:
        raise NotImplementedError(
            f"distributed sampling is not implemented yet (sampler_type={sampler_type!r})"
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
