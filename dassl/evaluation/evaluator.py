"""Evaluators: accumulate predictions batch by batch, then report Dassl's result lines."""
import math
import os.path as osp
from collections import OrderedDict

import torch

from dassl.utils import Registry, atomic_torch_save, check_availability
from dassl.utils import distributed as dist_utils

__all__ = [
    "EVALUATOR_REGISTRY",
    "build_evaluator",
    "EvaluatorBase",
    "Classification",
    "harmonic_mean",
    "openworld_accuracies",
]

EVALUATOR_REGISTRY = Registry("EVALUATOR")


def build_evaluator(cfg, **kwargs):
    """Instantiate the evaluator named by ``cfg.TEST.EVALUATOR`` (extra kwargs go to it)."""
    check_availability(cfg.TEST.EVALUATOR, EVALUATOR_REGISTRY.registered_names())
    if cfg.VERBOSE:
        print(f"Loading evaluator: {cfg.TEST.EVALUATOR}")
    return EVALUATOR_REGISTRY.get(cfg.TEST.EVALUATOR)(cfg, **kwargs)


class EvaluatorBase:
    """Interface: ``reset()``, ``process(model_output, ground_truth)`` per batch, ``evaluate()``."""

    def __init__(self, cfg):
        self.cfg = cfg

    def reset(self):
        """Forget everything processed so far."""
        raise NotImplementedError

    def process(self, mo, gt):
        """Add one batch of model outputs ``mo`` and labels ``gt``."""
        raise NotImplementedError

    def evaluate(self):
        """Print and return the metrics of everything processed since the last reset."""
        raise NotImplementedError

    def gather_from_ranks(self, indices):
        """Multi-process evaluation: replace this rank's state by the union of every rank's,
        in dataset order, so that ``evaluate()`` then reports the whole split on each rank.

        ``indices`` (1-D int64) holds the dataset position of each sample this rank
        processed, in processing order. Collective: every rank must call it.
        """
        raise NotImplementedError(f"{type(self).__name__} does not support multi-process evaluation")


def macro_f1_score(y_true, y_pred):
    """Macro-averaged F1 over the classes present in ``y_true`` (as a fraction in [0, 1]).

    Equals ``sklearn.metrics.f1_score(y_true, y_pred, average="macro",
    labels=np.unique(y_true))``: predictions of classes absent from ``y_true`` count only as
    misses of the true class, and a class with no true positives scores 0.
    """
    labels, true_index = torch.unique(y_true, sorted=True, return_inverse=True)
    num_labels = labels.numel()
    true_counts = torch.bincount(true_index, minlength=num_labels)
    hits = y_pred == y_true
    true_positives = torch.bincount(true_index[hits], minlength=num_labels)
    # Map each prediction to its position in `labels`; predictions outside `labels` drop out.
    pred_pos = torch.searchsorted(labels, y_pred).clamp(max=num_labels - 1)
    pred_in_labels = labels[pred_pos] == y_pred
    pred_counts = torch.bincount(pred_pos[pred_in_labels], minlength=num_labels)
    # F1 = 2TP / (2TP + FP + FN) = 2TP / (#predicted as c + #truly c); the denominator is > 0
    # because every label occurs in y_true.
    f1 = 2.0 * true_positives.double() / (pred_counts + true_counts).double()
    return float(f1.mean())


def harmonic_mean(base, new):
    """Harmonic mean 2*B*N/(B+N) of two accuracies (0 when both are 0), as the papers report HM."""
    total = base + new
    return 2.0 * base * new / total if total > 0 else 0.0


def openworld_accuracies(y_true, y_pred, num_classes):
    """Accuracy (percent) on base-class and on new-class samples of an all-class prediction set.

    Base classes are the first ``ceil(num_classes / 2)`` labels, as ``DATASET.SUBSAMPLE_CLASSES``
    splits them; predictions range over all ``num_classes`` labels, so confusing a base image
    with a new class counts as an error. Returns ``(base_accuracy, new_accuracy)``; an entry is
    None when no sample has a label of that half.
    """
    num_base = math.ceil(num_classes / 2)
    correct = (y_pred == y_true).double()
    is_new = (y_true >= num_base).long()
    # Index 0 gathers base samples, index 1 new ones: one pass for both counts.
    totals = torch.bincount(is_new, minlength=2)
    corrects = torch.bincount(is_new, weights=correct, minlength=2)
    accuracies = [
        100.0 * float(corrects[half]) / int(totals[half]) if int(totals[half]) > 0 else None
        for half in (0, 1)
    ]
    return accuracies[0], accuracies[1]


@EVALUATOR_REGISTRY.register()
class Classification(EvaluatorBase):
    """Accuracy, error rate and macro-F1 of single-label classification (Dassl's evaluator).

    ``evaluate()`` prints Dassl's block::

        => result
        * total: 1,000
        * correct: 712
        * accuracy: 71.2%
        * error: 28.8%
        * macro_f1: 70.9%

    and returns an OrderedDict whose first entry is the accuracy (trainers report that one),
    followed by ``error``, ``macro_f1`` and ``error_rate`` (Dassl's name for ``error``), all in
    percent. With ``TEST.OPENWORLD_METRICS`` (needs ``DATASET.SUBSAMPLE_CLASSES`` "all") it
    then prints ``* base_accuracy``, ``* new_accuracy`` and ``* hm`` and adds those keys: the
    accuracy on images of the base classes (the first ceil(C/2) of the C logit columns) and of
    the new classes, both predicted over all C classes, and their harmonic mean. With ``TEST.PER_CLASS_RESULT``
    it also prints one line per class and adds ``perclass_accuracy`` (mean over classes).
    With ``TEST.COMPUTE_CMAT`` it saves the row-normalised confusion matrix to
    ``OUTPUT_DIR/cmat.pt``. After ``evaluate()``, ``total``, ``correct`` and ``per_class``
    hold the raw counts and ``summary()`` gives them as a JSON-ready dict.
    """

    def __init__(self, cfg, lab2cname=None, **kwargs):
        super().__init__(cfg)
        if cfg.TEST.PER_CLASS_RESULT and lab2cname is None:
            raise ValueError(
                "TEST.PER_CLASS_RESULT=True needs lab2cname (label -> class name) for the evaluator"
            )
        self._lab2cname = lab2cname
        setting = cfg.TEST.get("OPENWORLD_METRICS", None)
        if setting not in (None, True, False):
            raise ValueError(f"TEST.OPENWORLD_METRICS must be True, False or None (automatic), got {setting!r}")
        self._openworld = bool(setting)
        if self._openworld and cfg.DATASET.SUBSAMPLE_CLASSES != "all":
            raise ValueError(
                "TEST.OPENWORLD_METRICS=True needs DATASET.SUBSAMPLE_CLASSES 'all' (base and new "
                f"classes in one label space), got {cfg.DATASET.SUBSAMPLE_CLASSES!r}"
            )
        self.reset()

    @property
    def openworld(self):
        """Whether :meth:`evaluate` adds the open-world metrics (base/new accuracy and HM)."""
        return self._openworld

    @openworld.setter
    def openworld(self, enabled):
        self._openworld = bool(enabled)

    def reset(self):
        """Forget all processed batches and the last results."""
        self._y_true = []
        self._y_pred = []
        self._correct = 0
        self._total = 0
        self._num_classes = None
        self.per_class = None
        self.results = None

    # Dassl's trainers read the private counters; keep them and offer public names too.
    @property
    def total(self):
        """Number of samples processed."""
        return self._total

    @property
    def correct(self):
        """Number of samples whose top-1 prediction was right."""
        return self._correct

    def process(self, mo, gt):
        """Record a batch: ``mo`` logits of shape (N, C), ``gt`` labels of shape (N,)."""
        if mo.dim() != 2 or gt.dim() != 1 or mo.shape[0] != gt.shape[0]:
            raise ValueError(
                f"Classification.process expects logits (N, C) and labels (N,), "
                f"got {tuple(mo.shape)} and {tuple(gt.shape)}"
            )
        if self._num_classes is not None and mo.shape[1] != self._num_classes:
            raise ValueError(
                f"Classification.process got {mo.shape[1]} logit columns after {self._num_classes} "
                "in earlier batches; every batch must score the same classes"
            )
        self._num_classes = mo.shape[1]
        pred = mo.max(dim=1).indices.detach().cpu().long()
        gt = gt.detach().cpu().long()
        self._correct += int((pred == gt).sum())
        self._total += gt.shape[0]
        self._y_true.append(gt)
        self._y_pred.append(pred)

    def gather_from_ranks(self, indices):
        """See :meth:`EvaluatorBase.gather_from_ranks`: labels and top-1 predictions (not the
        logits) are gathered, which is all the metrics need."""
        y_true = torch.cat(self._y_true) if self._y_true else torch.zeros(0, dtype=torch.int64)
        y_pred = torch.cat(self._y_pred) if self._y_pred else torch.zeros(0, dtype=torch.int64)
        indices = torch.as_tensor(indices, dtype=torch.int64).reshape(-1).cpu()
        if indices.numel() != y_true.numel():
            raise ValueError(
                f"gather_from_ranks got {indices.numel()} indices for {y_true.numel()} processed samples"
            )
        # A rank with an empty shard never saw the logits; take the column count from the others.
        num_classes = dist_utils.all_reduce(torch.tensor([self._num_classes or 0]), op="max")
        _, y_true, y_pred = dist_utils.gather_in_index_order(indices, y_true, y_pred)
        self._y_true, self._y_pred = [y_true], [y_pred]
        self._correct = int((y_pred == y_true).sum())
        self._total = int(y_true.numel())
        self._num_classes = int(num_classes.item()) or None

    def _per_class_counts(self, y_true, y_pred):
        labels = torch.unique(y_true, sorted=True)
        size = int(labels.max()) + 1
        totals = torch.bincount(y_true, minlength=size)
        corrects = torch.bincount(y_true[y_pred == y_true], minlength=size)
        rows = []
        for label in labels.tolist():
            try:
                classname = self._lab2cname[label]
            except (KeyError, IndexError):
                raise KeyError(f"label {label} has no class name in lab2cname") from None
            total, correct = int(totals[label]), int(corrects[label])
            rows.append(
                {
                    "label": label,
                    "classname": classname,
                    "total": total,
                    "correct": correct,
                    "accuracy": 100.0 * correct / total,
                }
            )
        return rows

    def _save_confusion_matrix(self, y_true, y_pred):
        labels = torch.unique(torch.cat([y_true, y_pred]), sorted=True)
        num = labels.numel()
        true_pos = torch.searchsorted(labels, y_true)
        pred_pos = torch.searchsorted(labels, y_pred)
        counts = torch.bincount(true_pos * num + pred_pos, minlength=num * num).view(num, num)
        row_sums = counts.sum(dim=1, keepdim=True).clamp(min=1)
        cmat = counts.double() / row_sums.double()
        save_path = osp.join(self.cfg.OUTPUT_DIR, "cmat.pt")
        atomic_torch_save({"labels": labels, "cmat": cmat}, save_path)
        print(f"Confusion matrix is saved to {save_path}")

    def _openworld_results(self, y_true, y_pred):
        """Print and return base/new accuracy and HM; empty (with a note) if a half has no image."""
        base_acc, new_acc = openworld_accuracies(y_true, y_pred, self._num_classes)
        if base_acc is None or new_acc is None:
            missing = "base" if base_acc is None else "new"
            print(
                f"Open-world metrics skipped: no test image belongs to the {missing} classes "
                f"(base = labels 0..{math.ceil(self._num_classes / 2) - 1} of {self._num_classes})"
            )
            return OrderedDict()
        hm = harmonic_mean(base_acc, new_acc)
        print(f"* base_accuracy: {base_acc:.1f}%\n* new_accuracy: {new_acc:.1f}%\n* hm: {hm:.1f}%")
        return OrderedDict([("base_accuracy", base_acc), ("new_accuracy", new_acc), ("hm", hm)])

    def evaluate(self):
        """Print Dassl's result lines and return the metrics (percent) as an OrderedDict."""
        if self._total == 0:
            raise ValueError("Classification.evaluate called before any batch was processed")
        y_true = torch.cat(self._y_true)
        y_pred = torch.cat(self._y_pred)
        acc = 100.0 * self._correct / self._total
        err = 100.0 - acc
        macro_f1 = 100.0 * macro_f1_score(y_true, y_pred)

        results = OrderedDict()
        results["accuracy"] = acc
        results["error"] = err
        results["macro_f1"] = macro_f1
        # Dassl's name for the error; kept so code written against Dassl finds it.
        results["error_rate"] = err
        print(
            "=> result\n"
            f"* total: {self._total:,}\n"
            f"* correct: {self._correct:,}\n"
            f"* accuracy: {acc:.1f}%\n"
            f"* error: {err:.1f}%\n"
            f"* macro_f1: {macro_f1:.1f}%"
        )
        if self._openworld:
            results.update(self._openworld_results(y_true, y_pred))

        if self.cfg.TEST.PER_CLASS_RESULT:
            self.per_class = self._per_class_counts(y_true, y_pred)
            print("=> per-class result")
            for row in self.per_class:
                print(
                    f"* class: {row['label']} ({row['classname']})\t"
                    f"total: {row['total']:,}\t"
                    f"correct: {row['correct']:,}\t"
                    f"acc: {row['accuracy']:.1f}%"
                )
            mean_acc = sum(row["accuracy"] for row in self.per_class) / len(self.per_class)
            print(f"* average: {mean_acc:.1f}%")
            results["perclass_accuracy"] = mean_acc

        if self.cfg.TEST.COMPUTE_CMAT and dist_utils.is_main_process():
            self._save_confusion_matrix(y_true, y_pred)

        self.results = results
        return results

    def summary(self):
        """JSON-ready dict of the last ``evaluate()``: counts, metrics and per-class rows."""
        if self.results is None:
            raise ValueError("Classification.summary called before evaluate()")
        summary = {"total": self._total, "correct": self._correct}
        summary.update(self.results)
        if self.per_class is not None:
            summary["per_class"] = [dict(row) for row in self.per_class]
        return summary
