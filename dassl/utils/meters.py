"""Running averages of training statistics."""
from collections import defaultdict

import torch

__all__ = ["AverageMeter", "MetricMeter"]


class AverageMeter:
    """Tracks the latest value and its running average.

    ``update(val, n)`` counts ``val`` as the mean of ``n`` samples. With ``ema=True`` the
    average is an exponential moving average, ``avg = 0.9 * avg + 0.1 * val``, starting from 0
    (Dassl's rule); ``sum`` and ``count`` are kept either way.
    """

    def __init__(self, ema=False):
        self.ema = ema
        self.reset()

    def reset(self):
        """Zero all statistics."""
        self.val = 0
        self.avg = 0
        self.sum = 0
        self.count = 0

    def update(self, val, n=1):
        """Add ``val`` (a number or a one-element tensor) observed over ``n`` samples."""
        if isinstance(val, torch.Tensor):
            val = val.item()
        self.val = val
        self.sum += val * n
        self.count += n
        if self.ema:
            self.avg = 0.9 * self.avg + 0.1 * val
        else:
            self.avg = self.sum / self.count


class MetricMeter:
    """A named set of ``AverageMeter``s, printed as ``"loss 1.2345 (1.3456) acc 50.0000 (45.0000)"``
    (latest value, average in parentheses, four decimals, joined by ``delimiter``)."""

    def __init__(self, delimiter=" "):
        self.meters = defaultdict(AverageMeter)
        self.delimiter = delimiter

    def update(self, input_dict):
        """Update one meter per key of ``input_dict`` (numbers or one-element tensors)."""
        if input_dict is None:
            return
        if not isinstance(input_dict, dict):
            raise TypeError(
                f"MetricMeter.update expects a dict of metrics, got {type(input_dict).__name__}"
            )
        for name, value in input_dict.items():
            self.meters[name].update(value)

    def __str__(self):
        return self.delimiter.join(
            f"{name} {meter.val:.4f} ({meter.avg:.4f})" for name, meter in self.meters.items()
        )
