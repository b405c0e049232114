"""DataManager (dataset + transforms + loaders) and DatasetWrapper, with Dassl's semantics.

Randomness and exact resume
---------------------------
The training loaders take their order from torch's global RNG by default: ``RandomSampler``
without a generator draws its permutation seed from it when an epoch's iterator starts, and
the DataLoader draws the workers' ``base_seed`` from it at the same moment. Each worker then
seeds Python's ``random``, ``torch`` and ``numpy`` from ``base_seed + worker_id`` (torch does
this itself), so worker-side random transforms are reproducible too. Restoring
``torch.get_rng_state()`` at an epoch boundary therefore reproduces the next epoch exactly,
for any ``NUM_WORKERS``. (With ``NUM_WORKERS = 0`` the transforms run in the main process and
also draw from the global RNG.) Passing ``generator`` moves all of this onto that generator,
whose state must then be saved instead.

Validation and test loaders carry a private generator: iterating them for evaluation never
advances the global RNG, so evaluating mid-training leaves the training order unchanged.

Multi-process training (a torch.distributed process group is initialised)
--------------------------------------------------------------------------
``DATALOADER.TRAIN_X.BATCH_SIZE`` is the *global* batch: it must be divisible by the world
size and each rank loads ``BATCH_SIZE / world`` images per step. The training order of an
epoch no longer comes from the global RNG but from ``(seed, epoch)`` (see
``samplers.DistributedBatchSampler``), identical on every rank; the trainer selects the epoch.
Evaluation loaders give each rank whole batches of the single-process loader, disjoint
(``samplers.ShardedSampler``).
"""
import torch
from tabulate import tabulate
from torch.utils.data import Dataset as TorchDataset

from dassl.data.datasets import build_dataset
from dassl.utils import distributed as dist_utils
from dassl.utils import read_image

from .samplers import DistributedBatchSampler, ShardedSampler, build_sampler
from .transforms import build_transform, input_size_from_cfg, interpolation_mode_from_cfg
from .transforms.pil_transforms import Compose, Normalize, Resize, ToTensor


def build_data_loader(
    cfg,
    sampler_type="SequentialSampler",
    data_source=None,
    batch_size=64,
    n_domain=0,
    n_ins=2,
    tfm=None,
    is_train=True,
    dataset_wrapper=None,
    generator=None,
    worker_init_fn=None,
    distributed=False,
    seed=None,
):
    """Build a ``torch.utils.data.DataLoader`` over ``data_source`` (a list of Datum).

    Training loaders drop the last incomplete batch, but only when the data holds at least
    one full batch (Dassl's rule, so a tiny few-shot set still yields one batch).
    ``pin_memory`` is on only when CUDA is available and ``cfg.USE_CUDA`` is set;
    ``num_workers`` is ``cfg.DATALOADER.NUM_WORKERS``.

    Args:
        cfg: config with Dassl's ``DATALOADER`` / ``INPUT`` keys.
        sampler_type: a ``cfg.DATALOADER.*.SAMPLER`` name (see ``samplers.SAMPLER_TYPES``).
        data_source: list of Datum.
        batch_size, n_domain, n_ins: batching parameters.
        tfm: transform (or list/tuple of transforms) applied to each image.
        is_train: training loader (drop_last rule, K_TRANSFORMS) or evaluation loader.
        dataset_wrapper: Dataset class to use instead of ``DatasetWrapper``.
        generator: optional ``torch.Generator`` for the sampler order and worker seeds;
            None uses torch's global RNG (see the module docstring).
        worker_init_fn: optional callable run in each worker after torch seeded it.
        distributed: multi-process loader for the current process group. A training loader
            then yields this rank's slice of each global batch of ``batch_size`` (same
            drop_last rule, order from ``(seed, epoch)``, see ``DistributedBatchSampler``);
            an evaluation loader yields this rank's share of the single-process batches
            (batches r, r + W, ...; possibly none).
        seed: base seed of the distributed training order (default: ``cfg.SEED``, or a seed
            shared by all ranks when that is negative).

    Raises:
        ValueError: empty ``data_source``, or a loader that would yield no batch.
    """
    if not data_source:
        raise ValueError(f"cannot build a data loader from an empty data source (sampler_type={sampler_type})")
    sampler = build_sampler(
        sampler_type,
        cfg=cfg,
        data_source=data_source,
        batch_size=batch_size,
        n_domain=n_domain,
        n_ins=n_ins,
        generator=generator,
    )
    wrapper_class = DatasetWrapper if dataset_wrapper is None else dataset_wrapper
    drop_last = is_train and len(data_source) >= batch_size
    if distributed:
        return _build_distributed_loader(
            cfg, wrapper_class(cfg, data_source, transform=tfm, is_train=is_train), sampler, batch_size,
            drop_last, is_train, generator, worker_init_fn, seed, sampler_type,
        )
    data_loader = torch.utils.data.DataLoader(
        wrapper_class(cfg, data_source, transform=tfm, is_train=is_train),
        batch_size=batch_size,
        sampler=sampler,
        num_workers=cfg.DATALOADER.NUM_WORKERS,
        drop_last=drop_last,
        pin_memory=torch.cuda.is_available() and cfg.get("USE_CUDA", True),
        generator=generator,
        worker_init_fn=worker_init_fn,
    )
    if len(data_loader) == 0:
        raise ValueError(
            f"data loader yields no batch: {len(data_source)} items, batch_size={batch_size}, sampler_type={sampler_type}"
        )
    return data_loader


def _build_distributed_loader(cfg, dataset, sampler, batch_size, drop_last, is_train, generator,
                              worker_init_fn, seed, sampler_type):
    """The multi-process variant of ``build_data_loader``'s DataLoader (see there)."""
    common = dict(
        num_workers=cfg.DATALOADER.NUM_WORKERS,
        pin_memory=torch.cuda.is_available() and cfg.get("USE_CUDA", True),
        generator=generator,
        worker_init_fn=worker_init_fn,
    )
    if not is_train:
        # Whole batches per rank: each evaluated batch is one of the single-process batches.
        # A rank's shard may be empty (fewer batches than ranks); the gathered evaluation
        # still covers the whole data, so an empty loader is fine here.
        shard = ShardedSampler(sampler, block_size=batch_size)
        return torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=shard, **common)
    seed = dist_utils.shared_seed(cfg.SEED) if seed is None else seed
    batch_sampler = DistributedBatchSampler(sampler, batch_size, drop_last=drop_last, seed=seed)
    data_loader = torch.utils.data.DataLoader(dataset, batch_sampler=batch_sampler, **common)
    if len(data_loader) == 0:
        raise ValueError(
            f"data loader yields no batch: {len(dataset)} items, batch_size={batch_size}, sampler_type={sampler_type}"
        )
    return data_loader


def check_global_batch_size(key, batch_size, world_size):
    """Raise a one-line ``ValueError`` unless the global ``batch_size`` (config key ``key``)
    splits evenly over ``world_size`` processes."""
    if batch_size % world_size != 0:
        raise ValueError(
            f"{key}={batch_size} is not divisible by the world size {world_size} "
            f"(it is the global batch: each process loads {key.rsplit('.', 1)[-1]}/{world_size} images per step)"
        )


class DataManager:
    """Builds the dataset named by ``cfg.DATASET.NAME``, its transforms and its loaders.

    Attributes:
        dataset: the ``DatasetBase`` instance.
        train_loader_x: labelled training loader (``DATALOADER.TRAIN_X``).
        train_loader_u: unlabelled training loader, or None when the dataset has no train_u
            (``DATALOADER.TRAIN_U``; ``SAME_AS_X`` copies TRAIN_X's sampler and batching).
        val_loader: validation loader, or None when the dataset has no val split.
        test_loader: test loader (``DATALOADER.TEST``, sequential by default).
        num_classes, num_source_domains, lab2cname: read-only properties.

    Args:
        cfg: the full config.
        custom_tfm_train, custom_tfm_test: transforms that replace ``build_transform``'s.
        dataset_wrapper: Dataset class to use instead of ``DatasetWrapper``.
        generator: optional ``torch.Generator`` for the training loaders (default: torch's
            global RNG, see the module docstring).
    """

    def __init__(self, cfg, custom_tfm_train=None, custom_tfm_test=None, dataset_wrapper=None, generator=None):
        self.distributed = dist_utils.is_distributed()
        for key in ("TRAIN_X", "TRAIN_U", "TEST"):
            value = cfg.DATALOADER[key].BATCH_SIZE
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"DATALOADER.{key}.BATCH_SIZE must be a positive integer, got {value!r}")
        if self.distributed:
            # Checked before the dataset is read: a wrong batch size should fail at once.
            check_global_batch_size("DATALOADER.TRAIN_X.BATCH_SIZE", cfg.DATALOADER.TRAIN_X.BATCH_SIZE,
                                    dist_utils.world_size())
        # Datasets cache what they derive (few-shot selections, generated splits, parsed
        # annotations) next to the data. Under torchrun rank 0 builds first and writes those
        # files alone; the other ranks then read them instead of redoing the work.
        with dist_utils.main_process_first():
            dataset = build_dataset(cfg)

        if custom_tfm_train is None:
            tfm_train = build_transform(cfg, is_train=True)
        else:
            print("* Using custom transform for training")
            tfm_train = custom_tfm_train
        if custom_tfm_test is None:
            tfm_test = build_transform(cfg, is_train=False)
        else:
            print("* Using custom transform for testing")
            tfm_test = custom_tfm_test

        loader_cfg = cfg.DATALOADER
        train_loader_x = self._build_train_loader(
            cfg, dataset.train_x, loader_cfg.TRAIN_X, tfm_train, dataset_wrapper, generator
        )
        train_loader_u = None
        if dataset.train_u:
            u_cfg = loader_cfg.TRAIN_X if loader_cfg.TRAIN_U.SAME_AS_X else loader_cfg.TRAIN_U
            if self.distributed and u_cfg is loader_cfg.TRAIN_U:
                check_global_batch_size("DATALOADER.TRAIN_U.BATCH_SIZE", u_cfg.BATCH_SIZE, dist_utils.world_size())
            train_loader_u = self._build_train_loader(
                cfg, dataset.train_u, u_cfg, tfm_train, dataset_wrapper, generator
            )

        val_loader = None
        if dataset.val:
            val_loader = self._build_eval_loader(cfg, dataset.val, tfm_test, dataset_wrapper)
        test_loader = self._build_eval_loader(cfg, dataset.test, tfm_test, dataset_wrapper)

        self._num_classes = dataset.num_classes
        self._num_source_domains = len(cfg.DATASET.SOURCE_DOMAINS)
        self._lab2cname = dataset.lab2cname

        self.dataset = dataset
        self.train_loader_x = train_loader_x
        self.train_loader_u = train_loader_u
        self.val_loader = val_loader
        self.test_loader = test_loader

        if cfg.VERBOSE:
            self.show_dataset_summary(cfg)

    @staticmethod
    def _build_train_loader(cfg, data_source, loader_node, tfm, dataset_wrapper, generator):
        """Training loader whose sampler and batching come from ``loader_node`` (TRAIN_X or TRAIN_U)."""
        return build_data_loader(
            cfg,
            sampler_type=loader_node.SAMPLER,
            data_source=data_source,
            batch_size=loader_node.BATCH_SIZE,
            n_domain=loader_node.N_DOMAIN,
            n_ins=loader_node.N_INS,
            tfm=tfm,
            is_train=True,
            dataset_wrapper=dataset_wrapper,
            generator=generator,
            distributed=dist_utils.is_distributed(),
        )

    @staticmethod
    def _build_eval_loader(cfg, data_source, tfm, dataset_wrapper):
        # A private generator keeps evaluation from advancing torch's global RNG.
        return build_data_loader(
            cfg,
            sampler_type=cfg.DATALOADER.TEST.SAMPLER,
            data_source=data_source,
            batch_size=cfg.DATALOADER.TEST.BATCH_SIZE,
            tfm=tfm,
            is_train=False,
            dataset_wrapper=dataset_wrapper,
            generator=torch.Generator().manual_seed(0),
            distributed=dist_utils.is_distributed(),
        )

    @property
    def num_classes(self):
        """Number of classes of the dataset (``dataset.num_classes``)."""
        return self._num_classes

    @property
    def num_source_domains(self):
        """``len(cfg.DATASET.SOURCE_DOMAINS)``."""
        return self._num_source_domains

    @property
    def lab2cname(self):
        """Dict label -> class name."""
        return self._lab2cname

    def show_dataset_summary(self, cfg):
        """Print a two-column table: dataset, domains, #classes and the size of each split."""
        rows = [["Dataset", cfg.DATASET.NAME]]
        if cfg.DATASET.SOURCE_DOMAINS:
            rows.append(["Source", cfg.DATASET.SOURCE_DOMAINS])
        if cfg.DATASET.TARGET_DOMAINS:
            rows.append(["Target", cfg.DATASET.TARGET_DOMAINS])
        rows.append(["# classes", f"{self.num_classes:,}"])
        rows.append(["# train_x", f"{len(self.dataset.train_x):,}"])
        if self.dataset.train_u:
            rows.append(["# train_u", f"{len(self.dataset.train_u):,}"])
        if self.dataset.val:
            rows.append(["# val", f"{len(self.dataset.val):,}"])
        rows.append(["# test", f"{len(self.dataset.test):,}"])
        print(tabulate(rows))


class DatasetWrapper(TorchDataset):
    """Torch Dataset over a list of Datum that reads and transforms each image.

    ``__getitem__(i)`` returns a dict with ``label``, ``domain``, ``impath``, ``index`` and
    ``img``. With a list/tuple of transforms the results go to ``img``, ``img2``, ``img3``...;
    with ``cfg.DATALOADER.K_TRANSFORMS = K > 1`` (training only) each of them is a list of K
    independently augmented views. Without a transform ``img`` is the PIL image. With
    ``cfg.DATALOADER.RETURN_IMG0`` the item also holds ``img0``: the image resized to
    ``INPUT.SIZE`` as a tensor, normalised when ``normalize`` is in ``INPUT.TRANSFORMS``.

    A missing or corrupt image raises ``read_image``'s ``OSError``, which names the path. With
    ``cfg.DATALOADER.SKIP_BAD_IMAGES`` it is reported (printed) and the next readable item of
    the data source is returned in its place (its own ``index``, label and path); every item then
    also holds ``bad_images_skipped``: 1 when the requested item was unreadable and replaced,
    else 0, which the trainer sums into one count per epoch or evaluation.
    """

    def __init__(self, cfg, data_source, transform=None, is_train=False):
        self.cfg = cfg
        self.data_source = data_source
        self.transform = transform
        self.is_train = is_train
        # Several augmented views of one image only make sense for training.
        self.k_tfm = cfg.DATALOADER.K_TRANSFORMS if is_train else 1
        self.return_img0 = cfg.DATALOADER.RETURN_IMG0
        self.skip_bad_images = cfg.DATALOADER.get("SKIP_BAD_IMAGES", False)
        if self.k_tfm > 1 and transform is None:
            raise ValueError(
                f"DATALOADER.K_TRANSFORMS={self.k_tfm} needs a transform, but transform is None"
            )

        steps = [
            Resize(input_size_from_cfg(cfg), interpolation=interpolation_mode_from_cfg(cfg)),
            ToTensor(),
        ]
        if "normalize" in cfg.INPUT.TRANSFORMS:
            steps.append(Normalize(mean=cfg.INPUT.PIXEL_MEAN, std=cfg.INPUT.PIXEL_STD))
        self.to_tensor = Compose(steps)

    def __len__(self):
        return len(self.data_source)

    def __getitem__(self, idx):
        if not self.skip_bad_images:
            return self._load(idx)
        for offset in range(len(self.data_source)):
            candidate = (idx + offset) % len(self.data_source)
            try:
                output = self._load(candidate)
            except OSError as err:
                print(f"Warning: {err}; skipping it (DATALOADER.SKIP_BAD_IMAGES)")
                continue
            # Always present with the option on, so that every item of a batch has the key.
            output["bad_images_skipped"] = int(offset > 0)
            return output
        raise OSError(f"no readable image among the {len(self.data_source)} items of the data source")

    def _load(self, idx):
        item = self.data_source[idx]
        output = {"label": item.label, "domain": item.domain, "impath": item.impath, "index": idx}
        img0 = read_image(item.impath)

        if self.transform is None:
            output["img"] = img0
        elif isinstance(self.transform, (list, tuple)):
            for position, tfm in enumerate(self.transform):
                key = "img" if position == 0 else f"img{position + 1}"
                output[key] = self._transform_image(tfm, img0)
        else:
            output["img"] = self._transform_image(self.transform, img0)

        if self.return_img0:
            output["img0"] = self.to_tensor(img0)
        return output

    def _transform_image(self, tfm, img0):
        views = [tfm(img0) for _ in range(self.k_tfm)]
        return views[0] if len(views) == 1 else views
