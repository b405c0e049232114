"""Epoch-wise learning-rate schedules with Dassl's warmup semantics.

Every scheduler here is stepped once per epoch. After construction the optimizer holds the LR of
epoch 0; after the k-th ``step()`` it holds the LR of epoch k.

Each schedule is written as a closed form of the epoch index instead of torch's chained
("multiply the current LR") updates. The values are the ones Dassl produces, but they depend on
nothing but the epoch counter, so ``state_dict()`` holds plain numbers (loadable with
``torch.load(weights_only=True)``) and a resumed run continues with identical LRs whatever order
the optimizer and the scheduler are restored in.

Warmup rule (Dassl's), for warmup length W and main-schedule factor f(k) (f(0) = 1):

* epochs 0 .. W-1: constant warmup -> WARMUP_CONS_LR; linear warmup -> WARMUP_MIN_LR at
  epoch 0, then LR * e / W;
* epoch e >= W with WARMUP_RECOUNT=True: LR * f(e - W), so the main schedule starts again from
  its first value at epoch W;
* epoch e >= W with WARMUP_RECOUNT=False: LR * f(0) * f(e) / f(W). Dassl sets the main schedule's
  counter to W and then lets torch chain its updates from the LR of epoch 0, which is exactly
  this ratio (for cosine it is not the plain cosine value at epoch e).
"""
import bisect
import math

from torch.optim.lr_scheduler import LRScheduler

__all__ = [
    "AVAILABLE_SCHEDULERS",
    "EpochLRScheduler",
    "SingleStepScheduler",
    "MultiStepScheduler",
    "CosineScheduler",
    "ConstantWarmupScheduler",
    "LinearWarmupScheduler",
    "build_lr_scheduler",
]

AVAILABLE_SCHEDULERS = ("single_step", "multi_step", "cosine")
AVAILABLE_WARMUP_TYPES = ("constant", "linear")


class EpochLRScheduler(LRScheduler):
    """A schedule where group i's LR at epoch e is ``base_lrs[i] * lr_factor(e)``.

    Subclasses define ``lr_factor`` (1.0 at epoch 0 except for a multi-step milestone at 0).
    """

    def lr_factor(self, epoch):
        """Multiplier applied to the base LR at ``epoch``."""
        raise NotImplementedError

    def get_lr(self):
        """LRs of the epoch in ``self.last_epoch``."""
        factor = self.lr_factor(self.last_epoch)
        return [base_lr * factor for base_lr in self.base_lrs]

    def _get_closed_form_lr(self):
        return self.get_lr()


class SingleStepScheduler(EpochLRScheduler):
    """Multiply the LR by ``gamma`` every ``step_size`` epochs (torch's StepLR)."""

    def __init__(self, optimizer, step_size, gamma=0.1, last_epoch=-1):
        if step_size <= 0:
            raise ValueError(f"step_size must be positive, got {step_size}")
        self.step_size = int(step_size)
        self.gamma = float(gamma)
        super().__init__(optimizer, last_epoch)

    def lr_factor(self, epoch):
        """``gamma ** (epoch // step_size)``."""
        return self.gamma ** (epoch // self.step_size)


class MultiStepScheduler(EpochLRScheduler):
    """Multiply the LR by ``gamma`` at each milestone epoch (torch's MultiStepLR)."""

    def __init__(self, optimizer, milestones, gamma=0.1, last_epoch=-1):
        # A repeated milestone decays twice and a milestone at 0 already applies to epoch 0, as
        # in torch; negative milestones never fire there, so they are dropped.
        self.milestones = sorted(int(m) for m in milestones if int(m) >= 0)
        self.gamma = float(gamma)
        super().__init__(optimizer, last_epoch)

    def lr_factor(self, epoch):
        """``gamma`` to the number of milestones <= ``epoch``."""
        return self.gamma ** bisect.bisect_right(self.milestones, epoch)


class CosineScheduler(EpochLRScheduler):
    """Cosine annealing from the base LR to 0 over ``max_epoch`` epochs (torch's
    CosineAnnealingLR with ``T_max=max_epoch``, ``eta_min=0``)."""

    def __init__(self, optimizer, max_epoch, last_epoch=-1):
        if max_epoch <= 0:
            raise ValueError(f"the cosine schedule needs OPTIM.MAX_EPOCH > 0, got {max_epoch}")
        self.max_epoch = float(max_epoch)
        super().__init__(optimizer, last_epoch)

    def lr_factor(self, epoch):
        """``(1 + cos(pi * epoch / max_epoch)) / 2``."""
        return 0.5 * (1.0 + math.cos(math.pi * epoch / self.max_epoch))


class _WarmupScheduler(LRScheduler):
    """Runs a warmup for ``warmup_epoch`` epochs, then hands over to ``successor``.

    ``successor`` must be an ``EpochLRScheduler``; it is used as a function of the epoch and its
    own counter is not advanced. ``recount`` is OPTIM.WARMUP_RECOUNT (see the module docstring).
    """

    def __init__(self, optimizer, successor, warmup_epoch, recount=True, last_epoch=-1):
        if not isinstance(successor, EpochLRScheduler):
            raise TypeError(
                "a warmup scheduler needs an EpochLRScheduler to follow it, "
                f"got {type(successor).__name__}"
            )
        if warmup_epoch <= 0:
            raise ValueError(f"OPTIM.WARMUP_EPOCH must be > 0 for a warmup, got {warmup_epoch}")
        self.successor = successor
        self.warmup_epoch = int(warmup_epoch)
        self.recount = bool(recount)
        super().__init__(optimizer, last_epoch)

    def warmup_lrs(self, epoch):
        """LRs for a warmup epoch (``epoch < warmup_epoch``)."""
        raise NotImplementedError

    def _successor_factor(self, epoch):
        if self.recount:
            return self.successor.lr_factor(epoch - self.warmup_epoch)
        factor = self.successor.lr_factor
        at_handover = factor(self.warmup_epoch)
        if at_handover == 0.0:
            return 0.0
        return factor(0) * factor(epoch) / at_handover

    def get_lr(self):
        """Warmup LRs before ``warmup_epoch``, the successor's schedule from then on."""
        if self.last_epoch < self.warmup_epoch:
            return self.warmup_lrs(self.last_epoch)
        factor = self._successor_factor(self.last_epoch)
        return [base_lr * factor for base_lr in self.successor.base_lrs]

    def _get_closed_form_lr(self):
        return self.get_lr()

    def state_dict(self):
        """Plain-data state, with the successor's own state nested under ``"successor"``."""
        state = {
            key: value
            for key, value in self.__dict__.items()
            if key not in ("optimizer", "successor")
        }
        state["successor"] = self.successor.state_dict()
        return state

    def load_state_dict(self, state_dict):
        """Restore a state produced by ``state_dict()``."""
        state = dict(state_dict)
        successor_state = state.pop("successor", None)
        self.__dict__.update(state)
        if successor_state is not None:
            self.successor.load_state_dict(successor_state)


class ConstantWarmupScheduler(_WarmupScheduler):
    """Warmup at a fixed LR ``cons_lr`` (the same for every param group), then ``successor``."""

    def __init__(self, optimizer, successor, warmup_epoch, cons_lr, recount=True, last_epoch=-1):
        self.cons_lr = float(cons_lr)
        super().__init__(optimizer, successor, warmup_epoch, recount, last_epoch)

    def warmup_lrs(self, epoch):
        """``cons_lr`` for every group."""
        return [self.cons_lr for _ in self.base_lrs]


class LinearWarmupScheduler(_WarmupScheduler):
    """Warmup at ``min_lr`` in epoch 0, then ``base_lr * epoch / warmup_epoch``, then ``successor``."""

    def __init__(self, optimizer, successor, warmup_epoch, min_lr, recount=True, last_epoch=-1):
        self.min_lr = float(min_lr)
        super().__init__(optimizer, successor, warmup_epoch, recount, last_epoch)

    def warmup_lrs(self, epoch):
        """``min_lr`` at epoch 0, the linear ramp afterwards."""
        if epoch == 0:
            return [self.min_lr for _ in self.base_lrs]
        return [base_lr * epoch / self.warmup_epoch for base_lr in self.base_lrs]


def _main_scheduler(optimizer, optim_cfg):
    name = optim_cfg.LR_SCHEDULER
    stepsize = optim_cfg.STEPSIZE
    if name == "single_step":
        if isinstance(stepsize, (list, tuple)):
            if not stepsize:
                raise ValueError("OPTIM.STEPSIZE is empty; single_step needs one integer")
            stepsize = stepsize[-1]
        if not isinstance(stepsize, int) or isinstance(stepsize, bool):
            raise TypeError(
                f"OPTIM.STEPSIZE must be an integer for single_step, got {stepsize!r}"
            )
        if stepsize <= 0:
            stepsize = optim_cfg.MAX_EPOCH
        return SingleStepScheduler(optimizer, stepsize, optim_cfg.GAMMA)
    if name == "multi_step":
        if not isinstance(stepsize, (list, tuple)):
            raise TypeError(
                f"OPTIM.STEPSIZE must be a list of epochs for multi_step, got {stepsize!r}"
            )
        return MultiStepScheduler(optimizer, stepsize, optim_cfg.GAMMA)
    return CosineScheduler(optimizer, optim_cfg.MAX_EPOCH)


def build_lr_scheduler(optimizer, optim_cfg):
    """Create the per-epoch scheduler described by ``optim_cfg`` (the ``cfg.OPTIM`` node).

    Uses LR_SCHEDULER (single_step | multi_step | cosine), STEPSIZE, GAMMA, MAX_EPOCH and, when
    WARMUP_EPOCH > 0, wraps it in a warmup of WARMUP_TYPE (constant | linear) with
    WARMUP_CONS_LR / WARMUP_MIN_LR and WARMUP_RECOUNT. Unknown names raise ``ValueError``.
    """
    name = optim_cfg.LR_SCHEDULER
    if name not in AVAILABLE_SCHEDULERS:
        raise ValueError(
            f"OPTIM.LR_SCHEDULER must be one of {list(AVAILABLE_SCHEDULERS)}, but got {name!r}"
        )
    warmup_epoch = optim_cfg.WARMUP_EPOCH
    warmup_type = optim_cfg.WARMUP_TYPE
    # Check before building anything: building a scheduler already rewrites the optimizer's LRs.
    if warmup_epoch > 0 and warmup_type not in AVAILABLE_WARMUP_TYPES:
        raise ValueError(
            f"OPTIM.WARMUP_TYPE must be one of {list(AVAILABLE_WARMUP_TYPES)}, "
            f"but got {warmup_type!r}"
        )

    scheduler = _main_scheduler(optimizer, optim_cfg)
    if warmup_epoch <= 0:
        return scheduler
    recount = optim_cfg.WARMUP_RECOUNT
    if warmup_type == "constant":
        return ConstantWarmupScheduler(
            optimizer, scheduler, warmup_epoch, optim_cfg.WARMUP_CONS_LR, recount
        )
    return LinearWarmupScheduler(
        optimizer, scheduler, warmup_epoch, optim_cfg.WARMUP_MIN_LR, recount
    )
