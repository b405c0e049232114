"""Linear-probe CLIP: multinomial logistic regression on the frozen image features.

The baseline of CoOp's few-shot curves (``lpclip/`` in KaiyangZhou/CoOp, after Appendix A3 of
the CLIP paper), run as a trainer of this framework so that it reads the same few-shot splits
(``DATASET.NUM_SHOTS`` and ``--seed``: ``NUM_SHOTS`` images per class for training, ``min(NUM_SHOTS,
4)`` per class for validation, exactly the other methods' splits) and writes the same ``log.txt``
result lines, ``results.json`` and checkpoint folder as every other method.

The protocol, as lpclip runs it:

* Features: the frozen image encoder's output (after its projection, **not** L2-normalised),
  of images under the *test* transform, for the train, val and test splits.
* Classifier: scikit-learn ``LogisticRegression(solver="lbfgs", max_iter=1000)`` with its
  default L2 penalty (multinomial for more than two classes), fitted on the few-shot train
  features only (never refitted on train + val).
* The inverse regularisation strength C, chosen on validation accuracy: first the grid
  1e6, 1e4, 1e2, 1, 1e-2, 1e-4, 1e-6 (the first best wins, i.e. the largest C among ties),
  then 8 steps of a bisection in log10(C) over [peak / 10, peak * 10]: both ends are fitted,
  the better end is kept (the smaller C on a tie) and the interval shrinks to its half on that
  side. The classifier kept is the one of the last step's winning end, as in lpclip.

The fitted classifier (float64 weights, bias, C, its validation accuracy and a digest of the
class names) is the trainer's only checkpointed module (``linear_probe/model.pth.tar-1`` and
``model-best.pth.tar``), so ``--eval-only --model-dir DIR --load-epoch 1`` evaluates it. A probe
has no classifier for classes it was not fitted on: ``DATASET.SUBSAMPLE_CLASSES new`` (the
"new" half of base-to-novel) and evaluating a probe on another class set are refused.
"""
import hashlib
import importlib.util
import math
import time
import warnings
from contextlib import nullcontext

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm
from yacs.config import CfgNode as CN

from dassl.data.data_manager import build_data_loader
from dassl.data.transforms import build_transform
from dassl.engine import TRAINER_REGISTRY
from dassl.engine.trainer import replacement_mask
from dassl.utils import progress_stream
from dassl.utils import distributed as dist_utils

from .base import ClipPromptTrainer

# lpclip's initial grid of C, in its order (the first best value wins).
LPCLIP_C_GRID = (1e6, 1e4, 1e2, 1.0, 1e-2, 1e-4, 1e-6)
LPCLIP_SEARCH_STEPS = 8
LPCLIP_MAX_ITER = 1000


# ----------------------------------------------------------------------------- the C search
def search_c(score, grid=LPCLIP_C_GRID, steps=LPCLIP_SEARCH_STEPS):
    """lpclip's search of C: ``score(C)`` (validation accuracy of the classifier fitted with C)
    on ``grid``, then ``steps`` bisection steps in log10(C) around the best grid value.

    Returns ``(C, score, trace)``: the C of the last step's winning end (the best grid value
    when ``steps`` is 0), its score, and ``trace``, the ``(C, score)`` pairs in the order they
    were first computed. An end that repeats the previous step's is not scored twice (the fit is
    deterministic), so ``score`` runs at most ``len(grid) + steps + 1`` times instead of
    ``len(grid) + 2 * steps``.
    """
    if not grid:
        raise ValueError("the grid of C values is empty")
    scores, trace = {}, []

    def evaluate(c):
        if c not in scores:
            scores[c] = score(c)
            trace.append((c, scores[c]))
        return scores[c]

    grid_scores = [evaluate(float(c)) for c in grid]
    best = int(np.argmax(grid_scores))  # first maximum, as np.argmax in lpclip
    chosen, chosen_score = float(grid[best]), grid_scores[best]
    # The interval's ends are kept as exponents, so that an end carried over to the next step is
    # the very same float (and is found among the scores already computed).
    low, high = math.log10(chosen) - 1.0, math.log10(chosen) + 1.0
    for _ in range(steps):
        c_low, c_high = 10.0 ** low, 10.0 ** high
        s_low, s_high = evaluate(c_low), evaluate(c_high)
        middle = 0.5 * (low + high)
        if s_low < s_high:
            chosen, chosen_score, low = c_high, s_high, middle
        else:  # a tie keeps the smaller C
            chosen, chosen_score, high = c_low, s_low, middle
    return chosen, chosen_score, trace


def make_logistic_regression(c, max_iter=LPCLIP_MAX_ITER):
    """lpclip's classifier: L2-penalised logistic regression by L-BFGS (scikit-learn's default
    penalty; multinomial for more than two classes)."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=float(c), solver="lbfgs", max_iter=int(max_iter))


def fit_logistic_regression(features, labels, c, max_iter=LPCLIP_MAX_ITER):
    """The classifier fitted on ``features`` (N, D) / ``labels`` (N,) with ``C = c``, and whether
    L-BFGS converged within ``max_iter`` iterations (scikit-learn's ConvergenceWarning is
    silenced: :func:`fit_linear_probe` reports the count once)."""
    from sklearn.exceptions import ConvergenceWarning

    clf = make_logistic_regression(c, max_iter)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(features, labels)
    return clf, int(np.max(clf.n_iter_)) < int(max_iter)


def accuracy_of(clf, features, labels):
    """Accuracy in percent of ``clf.predict`` on ``features``."""
    return 100.0 * float(np.mean(clf.predict(features) == labels))


def blas_threads_for(size):
    """One BLAS thread for small problems (``size`` = samples x dims x classes below 2**24, e.g.
    16 shots of 10 classes in 512 dims): each L-BFGS step is then a few small matrix products,
    which a multi-threaded BLAS only slows down (by 10x on a busy 2-core machine); larger problems
    keep the BLAS's threads."""
    if size >= 2 ** 24:
        return nullcontext()
    from threadpoolctl import threadpool_limits  # a dependency of scikit-learn

    return threadpool_limits(limits=1, user_api="blas")


def fit_linear_probe(train_features, train_labels, val_features=None, val_labels=None, c=None,
                     grid=LPCLIP_C_GRID, steps=LPCLIP_SEARCH_STEPS, max_iter=LPCLIP_MAX_ITER, log=print):
    """Fit the probe as lpclip does: search C on the validation features (or take ``c`` when
    given) and return ``(clf, info)``, ``info`` holding ``C``, ``val_accuracy`` (None without a
    search), ``train_accuracy``, ``search`` ([(C, val accuracy), ...] in the order computed) and
    ``not_converged`` (fits stopped by ``max_iter``)."""
    x_train, y_train = np.asarray(train_features, dtype=np.float64), np.asarray(train_labels)
    with blas_threads_for(x_train.shape[0] * x_train.shape[1] * len(np.unique(y_train))):
        return _fit_linear_probe(x_train, y_train, val_features, val_labels, c, grid, steps, max_iter, log)


def _fit_linear_probe(x_train, y_train, val_features, val_labels, c, grid, steps, max_iter, log):
    fitted, not_converged = {}, []

    def fit(value):
        clf, converged = fit_logistic_regression(x_train, y_train, value, max_iter)
        if not converged:
            not_converged.append(value)
        fitted[value] = clf
        return clf

    if c is not None:
        chosen, val_accuracy, trace = float(c), None, []
        clf = fit(chosen)
        if val_features is not None and len(val_features):
            val_accuracy = accuracy_of(clf, np.asarray(val_features, dtype=np.float64), np.asarray(val_labels))
        log(f"Linear probe: fixed C = {chosen:.6g}" +
            (f" (val accuracy {val_accuracy:.2f}%)" if val_accuracy is not None else ""))
    else:
        x_val, y_val = np.asarray(val_features, dtype=np.float64), np.asarray(val_labels)
        log(f"Linear probe: searching C on the validation split ({len(y_val)} images): grid "
            + ", ".join(f"{g:g}" for g in grid) + f", then {steps} bisection steps in log10(C)")
        chosen, val_accuracy, trace = search_c(lambda value: accuracy_of(fit(value), x_val, y_val), grid, steps)
        log("Linear probe: val accuracy by C: " + ", ".join(f"{value:.4g}: {acc:.2f}%" for value, acc in trace))
        clf = fitted[chosen]
    if not_converged:
        log(f"Linear probe: {len(not_converged)} of {len(fitted)} fits stopped at max_iter {max_iter} before "
            f"L-BFGS converged (C = {', '.join(f'{v:.4g}' for v in sorted(set(not_converged)))})")
    info = {
        "C": chosen,
        "val_accuracy": val_accuracy,
        "train_accuracy": accuracy_of(clf, x_train, y_train),
        "search": [[value, acc] for value, acc in trace],
        "not_converged": len(not_converged),
    }
    return clf, info


def classifier_tensors(clf, num_classes):
    """``(weight (num_classes, D), bias (num_classes,))`` float64 whose logits ``x @ W.T + b``
    have their argmax where ``clf.predict`` puts its prediction (labels 0..num_classes-1).

    A binary problem is one decision function in scikit-learn (class 1 when it is > 0): it
    becomes the logits (0, f(x)), whose argmax breaks the tie f(x) = 0 toward class 0 as well.
    """
    classes = np.asarray(clf.classes_)
    missing = sorted(set(range(num_classes)) - set(classes.tolist()))
    if missing:
        raise ValueError(f"the linear probe has no training image of class(es) {missing[:10]}: every class "
                         "needs at least one")
    coef, intercept = np.asarray(clf.coef_, dtype=np.float64), np.asarray(clf.intercept_, dtype=np.float64)
    if len(classes) == 2 and coef.shape[0] == 1:
        coef = np.concatenate([np.zeros_like(coef), coef])
        intercept = np.concatenate([np.zeros(1), intercept])
    weight = np.zeros((num_classes, coef.shape[1]))
    bias = np.zeros(num_classes)
    weight[classes] = coef
    bias[classes] = intercept
    return torch.from_numpy(weight), torch.from_numpy(bias)


def classnames_digest(classnames):
    """SHA-256 of the ordered class names, as a (32,) uint8 tensor (stored with the classifier)."""
    digest = hashlib.sha256("\n".join(classnames).encode("utf-8")).digest()
    return torch.tensor(list(digest), dtype=torch.uint8)


# ----------------------------------------------------------------------------------- model
class LinearProbeHead(nn.Module):
    """The fitted classifier: buffers only (nothing trains by gradient), all checkpointed.

    ``weight`` (n_cls, D) and ``bias`` (n_cls,) in float64 (scikit-learn's precision), ``C`` and
    ``val_accuracy`` (NaN when unknown), ``classnames_sha256`` (zeros when unknown).
    """

    def __init__(self, num_classes, dim):
        super().__init__()
        self.register_buffer("weight", torch.zeros(num_classes, dim, dtype=torch.float64))
        self.register_buffer("bias", torch.zeros(num_classes, dtype=torch.float64))
        self.register_buffer("C", torch.tensor(float("nan"), dtype=torch.float64))
        self.register_buffer("val_accuracy", torch.tensor(float("nan"), dtype=torch.float64))
        self.register_buffer("classnames_sha256", torch.zeros(32, dtype=torch.uint8))

    def forward(self, features):
        # float64 on the CPU and CUDA; MPS has no float64
        dtype = self.weight.dtype if self.weight.device.type != "mps" else torch.float32
        return features.to(dtype) @ self.weight.to(dtype).t() + self.bias.to(dtype)


class LinearProbeModel(nn.Module):
    """The frozen CLIP image encoder followed by the linear probe."""

    def __init__(self, clip_model, head, normalize=False):
        super().__init__()
        self.clip_model = clip_model
        self.head = head
        self.normalize = normalize

    @property
    def dtype(self):
        return self.clip_model.dtype

    def image_features(self, image):
        """The features the probe reads: the image encoder's output in fp32, L2-normalised only
        with ``NORMALIZE_FEATURES`` (lpclip does not normalise)."""
        feats = self.clip_model.encode_image(image.type(self.dtype)).float()
        return F.normalize(feats, dim=-1) if self.normalize else feats

    def forward(self, image):
        return self.head(self.image_features(image))


# --------------------------------------------------------------------------------- trainer
@TRAINER_REGISTRY.register()
class LinearProbeCLIP(ClipPromptTrainer):
    """Logistic regression on the frozen CLIP image features, C searched on val (CoOp's lpclip).

    ``train()`` extracts the features of the few-shot train and val splits under the test
    transform, fits the probe (``fit_linear_probe``), saves it as the checkpoint of epoch 1 and
    runs the final test through the engine's evaluator, like every trainer.
    """

    CFG_NODE = "LINEAR_PROBE"
    MODEL_NAME = "linear_probe"
    COMPOSABLE = False  # nothing a regularizer could wrap: no prompts, no gradient training

    @staticmethod
    def extend_cfg(cfg):
        cfg.TRAINER.LINEAR_PROBE = CN()
        cfg.TRAINER.LINEAR_PROBE.PREC = "fp16"  # precision of the image encoder: fp16, fp32, amp, bf16
        cfg.TRAINER.LINEAR_PROBE.C = 0.0  # > 0: use this C, no search
        cfg.TRAINER.LINEAR_PROBE.C_GRID = list(LPCLIP_C_GRID)  # initial grid, in search order
        cfg.TRAINER.LINEAR_PROBE.SEARCH_STEPS = LPCLIP_SEARCH_STEPS  # bisection steps in log10(C)
        cfg.TRAINER.LINEAR_PROBE.MAX_ITER = LPCLIP_MAX_ITER  # L-BFGS iterations per fit
        cfg.TRAINER.LINEAR_PROBE.NORMALIZE_FEATURES = False  # lpclip: raw (unnormalised) features

    def check_cfg(self, cfg):
        super().check_cfg(cfg)
        node = cfg.TRAINER.LINEAR_PROBE
        if cfg.DATASET.SUBSAMPLE_CLASSES == "new":
            raise ValueError(
                "LinearProbeCLIP has no classifier for classes it was not fitted on, so DATASET.SUBSAMPLE_CLASSES "
                "'new' (base-to-novel's new half) is undefined for it; fit and test it on 'all' (few-shot) or 'base'")
        grid = list(node.C_GRID)
        if not grid or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in grid):
            raise ValueError(f"TRAINER.LINEAR_PROBE.C_GRID must be a non-empty list of positive numbers, got {grid!r} "
                             "(in YAML write 1.0e+6, not 1e6, which YAML reads as a string)")
        if not isinstance(node.C, (int, float)) or node.C < 0:
            raise ValueError(f"TRAINER.LINEAR_PROBE.C must be >= 0 (0: search it on val), got {node.C!r}")
        if node.SEARCH_STEPS < 0 or node.MAX_ITER < 1:
            raise ValueError("TRAINER.LINEAR_PROBE.SEARCH_STEPS must be >= 0 and MAX_ITER >= 1, got "
                             f"{node.SEARCH_STEPS} and {node.MAX_ITER}")
        if importlib.util.find_spec("sklearn") is None:
            raise RuntimeError("LinearProbeCLIP needs scikit-learn: pip install scikit-learn")

    # --------------------------------------------------------------------------- model
    def build_model(self):
        cfg = self.cfg
        self.precision = self.resolve_precision()
        self.max_epoch = 1  # one "epoch": the fit; its checkpoint is model.pth.tar-1
        with dist_utils.main_process_first():
            clip_model = self.load_clip()
        print("Turning off gradients in the image and text encoders: only a logistic regression is fitted "
              "(scikit-learn, on the CPU)")
        for p in clip_model.parameters():
            p.requires_grad_(False)
        head = LinearProbeHead(self.num_classes, clip_model.embed_dim)
        self.model = LinearProbeModel(clip_model, head, normalize=cfg.TRAINER.LINEAR_PROBE.NORMALIZE_FEATURES)
        if self.precision == "fp16":
            clip_model.half()
        self.model.to(self.device)
        self.head = head
        self.probe_info = None
        self.optim = self.sched = None
        self.scaler = None
        self.register_model(self.MODEL_NAME, head, None, None)

    # ------------------------------------------------------------------------ features
    @torch.no_grad()
    def extract_features(self, data_source, name, transform):
        """(features (N, D) float32, labels (N,)) of ``data_source`` under ``transform`` (the test
        transform), in order. Every process extracts all of them (the fit is the same on every rank)."""
        cfg = self.cfg
        loader = build_data_loader(
            cfg, sampler_type="SequentialSampler", data_source=data_source,
            batch_size=cfg.DATALOADER.TEST.BATCH_SIZE, tfm=transform,
            is_train=False, generator=torch.Generator().manual_seed(0), distributed=False,
        )
        self.model.eval()
        feats, labels = [], []
        for batch in tqdm(loader, desc=f"features {name}", file=progress_stream(), dynamic_ncols=True,
                          disable=progress_stream() is None, leave=False):
            image, label = batch["img"], torch.as_tensor(batch["label"])
            replaced = replacement_mask(batch)
            if replaced is not None and replaced.any():  # DATALOADER.SKIP_BAD_IMAGES stand-ins
                image, label = image[~replaced], label[~replaced]
                if not len(label):
                    continue
            with self.autocast():
                feats.append(self.model.image_features(image.to(self.device)).float().cpu())
            labels.append(label.cpu())
        dim = self.head.weight.shape[1]
        features = torch.cat(feats) if feats else torch.zeros(0, dim)
        labels = torch.cat(labels) if labels else torch.zeros(0, dtype=torch.int64)
        print(f"Extracted {name} features: {tuple(features.shape)}")
        return features, labels

    def fit(self):
        """Extract the train/val features, fit the probe, put it in ``self.head``; return val acc."""
        node = self.cfg.TRAINER.LINEAR_PROBE
        dataset = self.dm.dataset
        fixed_c = float(node.C) if node.C > 0 else None
        if fixed_c is None and not dataset.val:
            raise ValueError(f"LinearProbeCLIP searches C on the validation split and dataset {self.cfg.DATASET.NAME} "
                             "has none; set TRAINER.LINEAR_PROBE.C to a fixed value")
        transform = build_transform(self.cfg, is_train=False)  # as lpclip: no augmentation, ever
        x_train, y_train = self.extract_features(dataset.train_x, "train", transform)
        x_val = y_val = None
        if dataset.val:
            x_val, y_val = self.extract_features(dataset.val, "val", transform)
        started = time.time()
        clf, info = fit_linear_probe(
            x_train.double().numpy(), y_train.numpy(),
            None if x_val is None else x_val.double().numpy(), None if y_val is None else y_val.numpy(),
            c=fixed_c, grid=[float(v) for v in node.C_GRID], steps=int(node.SEARCH_STEPS),
            max_iter=int(node.MAX_ITER))
        weight, bias = classifier_tensors(clf, self.num_classes)
        head = self.head
        head.weight.copy_(weight.to(head.weight.device))
        head.bias.copy_(bias.to(head.bias.device))
        head.C.fill_(info["C"])
        head.val_accuracy.fill_(float("nan") if info["val_accuracy"] is None else info["val_accuracy"])
        head.classnames_sha256.copy_(classnames_digest(self.dm.dataset.classnames).to(head.classnames_sha256.device))
        info.update(num_train=int(len(y_train)), num_val=0 if y_val is None else int(len(y_val)),
                    fit_time_s=round(time.time() - started, 3))
        val_txt = "" if info["val_accuracy"] is None else f", val accuracy {info['val_accuracy']:.2f}%"
        print(f"Linear probe: chosen C = {info['C']:.6g}{val_txt}, train accuracy {info['train_accuracy']:.2f}% "
              f"({info['num_train']} train / {info['num_val']} val images, {info['fit_time_s']:.1f} s)")
        self.probe_info = info
        return info["val_accuracy"]

    # ------------------------------------------------------------------------ training
    def train(self):
        """Fit once (or reuse this output dir's fitted probe), then the engine's final test."""
        self.start_epoch = self.epoch = 0
        self.before_train()  # stale temp files, resume from a saved probe, results.json aside
        if self.start_epoch >= self.max_epoch:
            print("The linear probe in the output directory is already fitted: going to the test")
        else:
            val_accuracy = self.fit()
            self.save_model(self.max_epoch - 1, self.output_dir, is_best=True, val_result=val_accuracy)
        self.model_epoch = self.max_epoch
        self.after_train()

    # ---------------------------------------------------------------------- evaluation
    def evaluation_context(self):
        return nullcontext()

    def model_inference(self, image):
        with self.autocast():
            feats = self.model.image_features(image).float()
        return self.head(feats)

    # --------------------------------------------------------------------- checkpoints
    def load_model(self, directory, epoch=None):
        if not directory:
            raise ValueError("LinearProbeCLIP --eval-only needs --model-dir: the fitted classifier of a "
                             "LinearProbeCLIP run (its linear_probe/ folder)")
        super().load_model(directory, epoch)

    def _load_weights(self, name, state_dict, path):
        weight = state_dict.get("weight")
        if weight is not None and weight.dim() == 2 and weight.shape[0] != self.num_classes:
            raise ValueError(
                f"the linear probe in {path} was fitted on {weight.shape[0]} classes and this dataset "
                f"({self.cfg.DATASET.NAME}, SUBSAMPLE_CLASSES {self.cfg.DATASET.SUBSAMPLE_CLASSES}) has "
                f"{self.num_classes}: a linear probe only classifies the classes it was fitted on")
        digest = state_dict.get("classnames_sha256")
        if digest is not None and bool(digest.any()) and not torch.equal(
                digest.cpu(), classnames_digest(self.dm.dataset.classnames)):
            raise ValueError(f"the linear probe in {path} was fitted on other classes than those of "
                             f"{self.cfg.DATASET.NAME} (SUBSAMPLE_CLASSES {self.cfg.DATASET.SUBSAMPLE_CLASSES}): "
                             "a linear probe only classifies the classes it was fitted on")
        super()._load_weights(name, state_dict, path)
        if self.probe_info is None or self.probe_info.get("C") != float(self.head.C):
            self.probe_info = self.probe_summary_from_head()

    def probe_summary_from_head(self):
        c, val = float(self.head.C), float(self.head.val_accuracy)
        return {"C": None if math.isnan(c) else c, "val_accuracy": None if math.isnan(val) else val}

    def results_summary(self):
        summary = super().results_summary()
        info = dict(self.probe_info or self.probe_summary_from_head())
        info["normalize_features"] = bool(self.cfg.TRAINER.LINEAR_PROBE.NORMALIZE_FEATURES)
        summary["linear_probe"] = info
        return summary
