"""Benchmark datasets in CoOp's on-disk layouts; importing this package registers them all.

Every dataset is registered in ``dassl.data.datasets.DATASET_REGISTRY`` under
CoOp's class name (``cfg.DATASET.NAME``).
"""
from . import (  # noqa: F401  (imported to register the datasets)
    caltech101,
    dtd,
    eurosat,
    fgvc_aircraft,
    food101,
    imagefolder,
    imagenet,
    imagenet_a,
    imagenet_r,
    imagenet_sketch,
    imagenetv2,
    minishapes,
    oxford_flowers,
    oxford_pets,
    stanford_cars,
    sun397,
    ucf101,
)
