"""EuroSAT (10 land-use classes): ``eurosat/2750/<class>/`` + ``split_zhou_EuroSAT.json``."""
from dassl.data.datasets import DATASET_REGISTRY

from .base import FolderPerClassBenchmark


@DATASET_REGISTRY.register()
class EuroSAT(FolderPerClassBenchmark):
    """EuroSAT RGB; folder names are replaced by CoOp's descriptive class names."""

    dataset_dir = "eurosat"
    image_subdir = "2750"
    split_file = "split_zhou_EuroSAT.json"
    split_gdrive_id = "1Ip7yaCWFi0eaOFUGga0lUdVi_DDQth1o"
    renamed_classes = {
        "AnnualCrop": "Annual Crop Land",
        "Forest": "Forest",
        "HerbaceousVegetation": "Herbaceous Vegetation Land",
        "Highway": "Highway or Road",
        "Industrial": "Industrial Buildings",
        "Pasture": "Pasture Land",
        "PermanentCrop": "Permanent Crop Land",
        "Residential": "Residential Buildings",
        "River": "River",
        "SeaLake": "Sea or Lake",
    }
