"""Default configuration: every key of Dassl.pytorch with Dassl's default value.

Method config files (YAML) written for Dassl/CoOp/MaPLe/BMIP are merged on top of this tree, so a
key missing here makes their files fail to load. Keys that Dassl itself lacks but that the
prompt-learning repositories add in their ``train.py`` are marked "added" below.
"""
from yacs.config import CfgNode as CN

_C = CN()

_C.VERSION = 1
# Where log.txt, checkpoints and results.json go.
_C.OUTPUT_DIR = "./output"
# A directory with a previous run's checkpoints to continue from ("" = start fresh).
_C.RESUME = ""
# A negative seed leaves every random generator unseeded.
_C.SEED = -1
_C.USE_CUDA = True
# Device to run on: "" picks CUDA when available (and USE_CUDA), else the CPU;
# "cpu", "cuda", "cuda:1" force one (train.py --device sets it).
_C.DEVICE = ""
# Deterministic kernels (train.py --deterministic): cuDNN's deterministic algorithms without
# autotuning, torch.use_deterministic_algorithms, and the cuBLAS workspace setting they need.
# Costs speed on a GPU; the CPU is deterministic either way for a fixed thread count.
_C.DETERMINISTIC = False
# Print trainer/dataset/backbone details while building.
_C.VERBOSE = True

# ---------------------------------------------------------------------------------------------
# Input pipeline
# ---------------------------------------------------------------------------------------------
_C.INPUT = CN()
_C.INPUT.SIZE = (224, 224)
# Interpolation used by every resize transform.
_C.INPUT.INTERPOLATION = "bilinear"
# Test-time resizing: "shortest" (shorter side to max(SIZE), then centre crop: Dassl's and CLIP's)
# or "squash" (both sides to SIZE, aspect ratio not kept: SigLIP's preprocessing).
_C.INPUT.RESIZE_MODE = "shortest"
# Names of the transforms to apply (see dassl.data.transforms).
_C.INPUT.TRANSFORMS = ()
# True disables both train and test transforms.
_C.INPUT.NO_TRANSFORM = False
# Normalisation statistics; ImageNet's unless a method config overrides them (CLIP configs do).
_C.INPUT.PIXEL_MEAN = [0.485, 0.456, 0.406]
_C.INPUT.PIXEL_STD = [0.229, 0.224, 0.225]
_C.INPUT.CROP_PADDING = 4
_C.INPUT.RRCROP_SCALE = (0.08, 1.0)
_C.INPUT.CUTOUT_N = 1
_C.INPUT.CUTOUT_LEN = 16
_C.INPUT.GN_MEAN = 0.0
_C.INPUT.GN_STD = 0.15
_C.INPUT.RANDAUGMENT_N = 2
_C.INPUT.RANDAUGMENT_M = 10
# Colour jitter strengths: brightness, contrast, saturation, hue.
_C.INPUT.COLORJITTER_B = 0.4
_C.INPUT.COLORJITTER_C = 0.4
_C.INPUT.COLORJITTER_S = 0.4
_C.INPUT.COLORJITTER_H = 0.1
# Probability of random grayscale.
_C.INPUT.RGS_P = 0.2
# Gaussian blur: probability and (odd) kernel size.
_C.INPUT.GB_P = 0.5
_C.INPUT.GB_K = 21

# ---------------------------------------------------------------------------------------------
# Dataset
# ---------------------------------------------------------------------------------------------
_C.DATASET = CN()
# Folder that holds all datasets ($DATA).
_C.DATASET.ROOT = ""
_C.DATASET.NAME = ""
# Domain names for domain adaptation / generalisation datasets.
_C.DATASET.SOURCE_DOMAINS = ()
_C.DATASET.TARGET_DOMAINS = ()
# Labelled images in total (semi-supervised learning); -1 = all.
_C.DATASET.NUM_LABELED = -1
# Images per class for few-shot training; -1 (or 0) = all images.
_C.DATASET.NUM_SHOTS = -1
# Fraction of training data held out as validation (semi-supervised datasets only).
_C.DATASET.VAL_PERCENT = 0.1
# STL-10 fold (0-9); negative = no fold.
_C.DATASET.STL10_FOLD = -1
# CIFAR-10/100-C corruption type and level.
_C.DATASET.CIFAR_C_TYPE = ""
_C.DATASET.CIFAR_C_LEVEL = 1
# Put all training data into the unlabelled set too (e.g. FixMatch).
_C.DATASET.ALL_AS_UNLABELED = False
# Added (CoOp/MaPLe/BMIP train.py): which half of the classes to keep: "all", "base" or "new".
_C.DATASET.SUBSAMPLE_CLASSES = "all"
# Added: when a dataset's official split file is missing, build a split from the images on disk
# instead of failing (off by default so a missing file is never silently replaced).
_C.DATASET.ALLOW_GENERATED_SPLIT = False
# Added: folder of the custom ImageFolder dataset (one sub-folder per class).
_C.DATASET.IMAGEFOLDER_DIR = ""

# ---------------------------------------------------------------------------------------------
# Data loaders
# ---------------------------------------------------------------------------------------------
_C.DATALOADER = CN()
_C.DATALOADER.NUM_WORKERS = 4
# How many augmented views of each training image to return.
_C.DATALOADER.K_TRANSFORMS = 1
# Also return the un-augmented image ("img0"), used by consistency losses.
_C.DATALOADER.RETURN_IMG0 = False
# Added: skip (and log) unreadable images instead of stopping the run.
_C.DATALOADER.SKIP_BAD_IMAGES = False
# Labelled training loader.
_C.DATALOADER.TRAIN_X = CN()
_C.DATALOADER.TRAIN_X.SAMPLER = "RandomSampler"
_C.DATALOADER.TRAIN_X.BATCH_SIZE = 32
# RandomDomainSampler: domains per batch (0 or -1 = all domains).
_C.DATALOADER.TRAIN_X.N_DOMAIN = 0
# RandomClassSampler: instances per class.
_C.DATALOADER.TRAIN_X.N_INS = 16
# Unlabelled training loader.
_C.DATALOADER.TRAIN_U = CN()
# True = reuse TRAIN_X's sampler and batch size.
_C.DATALOADER.TRAIN_U.SAME_AS_X = True
_C.DATALOADER.TRAIN_U.SAMPLER = "RandomSampler"
_C.DATALOADER.TRAIN_U.BATCH_SIZE = 32
_C.DATALOADER.TRAIN_U.N_DOMAIN = 0
_C.DATALOADER.TRAIN_U.N_INS = 16
# Validation/test loader.
_C.DATALOADER.TEST = CN()
_C.DATALOADER.TEST.SAMPLER = "SequentialSampler"
_C.DATALOADER.TEST.BATCH_SIZE = 32

# ---------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------
_C.MODEL = CN()
# Weights to initialise the whole model from ("" = none).
_C.MODEL.INIT_WEIGHTS = ""
_C.MODEL.BACKBONE = CN()
# For CLIP trainers: an OpenAI model name (RN50, ViT-B/16, ...), a path to a checkpoint file, or
# openclip:<open_clip model name or config JSON> (docs/BACKBONES.md).
_C.MODEL.BACKBONE.NAME = ""
_C.MODEL.BACKBONE.PRETRAINED = True
# openclip: backbones: the weights file (open_clip's .bin / .pt / .safetensors state dict), and the
# open_clip pretrained tag it was released under where the model's tags differ in preprocessing.
_C.MODEL.BACKBONE.WEIGHTS = ""
_C.MODEL.BACKBONE.TAG = ""
# openclip: models whose text uses a Hugging Face tokenizer (SigLIP): the local folder of its files.
_C.MODEL.BACKBONE.TOKENIZER = ""
# Optional embedding head between backbone and classifier ("" = none).
_C.MODEL.HEAD = CN()
_C.MODEL.HEAD.NAME = ""
# Hidden layer widths of the head, e.g. [512, 512].
_C.MODEL.HEAD.HIDDEN_LAYERS = ()
_C.MODEL.HEAD.ACTIVATION = "relu"
_C.MODEL.HEAD.BN = True
_C.MODEL.HEAD.DROPOUT = 0.0
# Added (BMIP train.py sets 48 there): seed used only while initialising prompt parameters, so
# that the initial prompts do not depend on the data seed; negative = use the global RNG as is.
_C.MODEL.INIT_SEED = -1

# ---------------------------------------------------------------------------------------------
# Optimisation
# ---------------------------------------------------------------------------------------------
_C.OPTIM = CN()
# One of adam, amsgrad, sgd, rmsprop, radam, adamw.
_C.OPTIM.NAME = "adam"
_C.OPTIM.LR = 0.0003
_C.OPTIM.WEIGHT_DECAY = 5e-4
_C.OPTIM.MOMENTUM = 0.9
# The misspelling is Dassl's key name; configs use it, so it stays.
_C.OPTIM.SGD_DAMPNING = 0
_C.OPTIM.SGD_NESTEROV = False
_C.OPTIM.RMSPROP_ALPHA = 0.99
# Betas shared by all Adam-like optimisers (adam, amsgrad, radam, adamw).
_C.OPTIM.ADAM_BETA1 = 0.9
_C.OPTIM.ADAM_BETA2 = 0.999
# Staged LR: child modules named in NEW_LAYERS train at LR, all others at LR * BASE_LR_MULT.
_C.OPTIM.STAGED_LR = False
_C.OPTIM.NEW_LAYERS = ()
_C.OPTIM.BASE_LR_MULT = 0.1
# One of single_step, multi_step, cosine; stepped once per epoch.
_C.OPTIM.LR_SCHEDULER = "single_step"
# single_step uses the last entry; -1 or 0 means "decay at MAX_EPOCH". multi_step: milestones.
_C.OPTIM.STEPSIZE = (-1,)
_C.OPTIM.GAMMA = 0.1
_C.OPTIM.MAX_EPOCH = 10
# Warmup runs for WARMUP_EPOCH epochs when it is > 0.
_C.OPTIM.WARMUP_EPOCH = -1
# "constant" (WARMUP_CONS_LR throughout) or "linear" (from WARMUP_MIN_LR up to LR).
_C.OPTIM.WARMUP_TYPE = "linear"
_C.OPTIM.WARMUP_CONS_LR = 1e-5
_C.OPTIM.WARMUP_MIN_LR = 1e-5
# True: the main schedule starts counting at 0 when warmup ends.
# False: it continues from epoch WARMUP_EPOCH.
_C.OPTIM.WARMUP_RECOUNT = True

# ---------------------------------------------------------------------------------------------
# Training loop
# ---------------------------------------------------------------------------------------------
_C.TRAIN = CN()
# Save a checkpoint every N epochs; <= 0 keeps only the last one.
_C.TRAIN.CHECKPOINT_FREQ = 0
# Print a progress line every N batches.
_C.TRAIN.PRINT_FREQ = 10
# Which loader defines the epoch length: "train_x", "train_u" or "smaller_one".
_C.TRAIN.COUNT_ITER = "train_x"
# Added: run the training step's forward through torch.compile (evaluation stays eager).
_C.TRAIN.COMPILE = False
# Added: the torch.compile backend ("inductor" compiles kernels; "aot_eager" only traces).
_C.TRAIN.COMPILE_BACKEND = "inductor"
# Added (BMIP): stop when validation accuracy has not improved for PATIENT_COUNT evaluations.
_C.TRAIN.EARLY_STOPPING = False
_C.TRAIN.PATIENT_COUNT = 3
# Early stopping never ends a run before this many epochs (the official BMIP rule: 6).
_C.TRAIN.EARLY_STOPPING_MIN_EPOCHS = 6

# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------
_C.TEST = CN()
_C.TEST.EVALUATOR = "Classification"
# Also report accuracy per class (and their mean).
_C.TEST.PER_CLASS_RESULT = False
# Save the row-normalised confusion matrix to OUTPUT_DIR/cmat.pt.
_C.TEST.COMPUTE_CMAT = False
# Open-world protocol (BMIP): with DATASET.SUBSAMPLE_CLASSES "all", also report accuracy on base-class
# images (first ceil(n/2) labels), on new-class images and their harmonic mean, all over the full classifier.
# None (automatic): on when a loaded model records that it was trained on the base classes and the
# test is on all classes; True forces it (needs SUBSAMPLE_CLASSES "all"); False turns it off.
_C.TEST.OPENWORLD_METRICS = None
# Skip the final test after training.
_C.TEST.NO_TEST = False
# Added: cache the frozen CLIP's image features of an evaluation split on disk when a method's
# test images meet no prompt (zero-shot CLIP, CoOp, ...), keyed by the weights, the image list,
# the transform, precision and device (trainers/feature_cache.py); "" = the default folder.
_C.TEST.FEATURE_CACHE = True
_C.TEST.FEATURE_CACHE_DIR = ""
# Split used for the final evaluation: "test" or "val".
_C.TEST.SPLIT = "test"
# Model evaluated after training: "last_step" or "best_val" (the latter validates every epoch,
# falling back to the test split when there is no validation split).
_C.TEST.FINAL_MODEL = "last_step"
# Added (BMIP train.py): True skips BMIP's per-epoch validation pass, the one early stopping and
# best-model saving rely on in BMIP's trainer.
_C.TEST.NO_TEST_EARLY = True

# Added (BMIP config files carry this top-level section): whether BMIP's per-layer prompt
# projections share parameters across layers on the vision / text side.
_C.SHARE = CN()
_C.SHARE.SHARE_PARAMETER_VISUAL = True
_C.SHARE.SHARE_PARAMETER_TEXT = True

# ---------------------------------------------------------------------------------------------
# Trainer-specific options. Prompt-learning trainers add their own cfg.TRAINER.<NAME> node;
# the nodes below are Dassl's own trainers, kept so Dassl config files still load.
# ---------------------------------------------------------------------------------------------
_C.TRAINER = CN()
_C.TRAINER.NAME = ""

# Domain adaptation
_C.TRAINER.MCD = CN()
_C.TRAINER.MCD.N_STEP_F = 4
_C.TRAINER.MME = CN()
_C.TRAINER.MME.LMDA = 0.1
_C.TRAINER.CDAC = CN()
_C.TRAINER.CDAC.CLASS_LR_MULTI = 10
_C.TRAINER.CDAC.RAMPUP_COEF = 30
_C.TRAINER.CDAC.RAMPUP_ITRS = 1000
_C.TRAINER.CDAC.TOPK_MATCH = 5
_C.TRAINER.CDAC.P_THRESH = 0.95
_C.TRAINER.CDAC.STRONG_TRANSFORMS = ()
_C.TRAINER.SE = CN()
_C.TRAINER.SE.EMA_ALPHA = 0.999
_C.TRAINER.SE.CONF_THRE = 0.95
_C.TRAINER.SE.RAMPUP = 300
_C.TRAINER.M3SDA = CN()
_C.TRAINER.M3SDA.LMDA = 0.5
_C.TRAINER.M3SDA.N_STEP_F = 4
_C.TRAINER.DAEL = CN()
_C.TRAINER.DAEL.WEIGHT_U = 0.5
_C.TRAINER.DAEL.CONF_THRE = 0.95
_C.TRAINER.DAEL.STRONG_TRANSFORMS = ()

# Domain generalisation
_C.TRAINER.CROSSGRAD = CN()
_C.TRAINER.CROSSGRAD.EPS_F = 1.0
_C.TRAINER.CROSSGRAD.EPS_D = 1.0
_C.TRAINER.CROSSGRAD.ALPHA_F = 0.5
_C.TRAINER.CROSSGRAD.ALPHA_D = 0.5
_C.TRAINER.DDAIG = CN()
_C.TRAINER.DDAIG.G_ARCH = ""
_C.TRAINER.DDAIG.LMDA = 0.3
_C.TRAINER.DDAIG.CLAMP = False
_C.TRAINER.DDAIG.CLAMP_MIN = -1.0
_C.TRAINER.DDAIG.CLAMP_MAX = 1.0
_C.TRAINER.DDAIG.WARMUP = 0
_C.TRAINER.DDAIG.ALPHA = 0.5
_C.TRAINER.DAELDG = CN()
_C.TRAINER.DAELDG.WEIGHT_U = 0.5
_C.TRAINER.DAELDG.CONF_THRE = 0.95
_C.TRAINER.DAELDG.STRONG_TRANSFORMS = ()
_C.TRAINER.DOMAINMIX = CN()
_C.TRAINER.DOMAINMIX.TYPE = "crossdomain"
_C.TRAINER.DOMAINMIX.ALPHA = 1.0
_C.TRAINER.DOMAINMIX.BETA = 1.0

# Semi-supervised learning
_C.TRAINER.ENTMIN = CN()
_C.TRAINER.ENTMIN.LMDA = 1e-3
_C.TRAINER.MEANTEACHER = CN()
_C.TRAINER.MEANTEACHER.WEIGHT_U = 1.0
_C.TRAINER.MEANTEACHER.EMA_ALPHA = 0.999
_C.TRAINER.MEANTEACHER.RAMPUP = 5
_C.TRAINER.MIXMATCH = CN()
_C.TRAINER.MIXMATCH.WEIGHT_U = 100.0
_C.TRAINER.MIXMATCH.TEMP = 2.0
_C.TRAINER.MIXMATCH.MIXUP_BETA = 0.75
_C.TRAINER.MIXMATCH.RAMPUP = 20000
_C.TRAINER.FIXMATCH = CN()
_C.TRAINER.FIXMATCH.WEIGHT_U = 1.0
_C.TRAINER.FIXMATCH.CONF_THRE = 0.95
_C.TRAINER.FIXMATCH.STRONG_TRANSFORMS = ()
