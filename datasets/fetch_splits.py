"""Download CoOp's fixed split files (and the small name files some datasets need) from Google Drive.

    python -m datasets.fetch_splits --root $DATA                      # every dataset
    python -m datasets.fetch_splits --root $DATA --datasets EuroSAT dtd

Files go into the dataset folders of CoOp's layout (``$DATA/eurosat/split_zhou_EuroSAT.json``,
``$DATA/imagenet/classnames.txt``, ...). Existing files are left alone. Datasets
can be named by their ``DATASET.NAME`` (``OxfordPets``), their folder
(``oxford_pets``) or their config file name (``oxford_pets``), case-insensitively.
The Google Drive ids are the ones listed in CoOp's DATASETS.md; each dataset
class carries its own (``split_gdrive_id``, ``extra_gdrive_files``).
"""
import argparse
import os
import re
import sys
import tempfile

# Being a submodule of ``datasets``, this module runs after the package __init__ has
# imported (and so registered) every dataset.
from dassl.data.datasets import DATASET_REGISTRY


def downloadable_files(dataset_class):
    """``{file name: Google Drive id}`` of the files ``dataset_class`` can fetch."""
    files = dict(getattr(dataset_class, "extra_gdrive_files", None) or {})
    if getattr(dataset_class, "split_gdrive_id", None):
        files[dataset_class.split_file] = dataset_class.split_gdrive_id
    return files


def _normalize(name):
    return re.sub(r"[^a-z0-9]", "", name.lower())


def fetchable_datasets():
    """``{registered name: dataset class}`` for every dataset with something to download."""
    return {
        name: DATASET_REGISTRY.get(name)
        for name in DATASET_REGISTRY.registered_names()
        if downloadable_files(DATASET_REGISTRY.get(name))
    }


def resolve_dataset(name):
    """The dataset class for a registered name, folder name or config name (case-insensitive)."""
    candidates = fetchable_datasets()
    wanted = _normalize(name)
    for registered, dataset_class in candidates.items():
        if wanted in (_normalize(registered), _normalize(dataset_class.dataset_dir)):
            return dataset_class
    raise ValueError(f"no downloadable files for dataset {name!r}; choose from: {', '.join(candidates)}")


def gdrive_download(file_id, destination):
    """Download Google Drive file ``file_id`` to ``destination`` via a temporary file (atomic)."""
    try:
        import gdown
    except ImportError:
        raise RuntimeError("gdown is not installed (pip install gdown)") from None
    directory = os.path.dirname(os.path.abspath(destination))
    handle, tmp_path = tempfile.mkstemp(prefix=".download-", dir=directory)
    os.close(handle)
    try:
        try:
            result = gdown.download(id=file_id, output=tmp_path, quiet=False)
        except Exception as err:  # gdown raises several unrelated types (HTTP, parsing, quota)
            raise RuntimeError(f"{type(err).__name__}: {err}") from err
        if result is None or not os.path.isfile(tmp_path) or os.path.getsize(tmp_path) == 0:
            raise RuntimeError("gdown returned no file")
        os.replace(tmp_path, destination)
    finally:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)


def fetch_splits(root, dataset_names=None):
    """Download the missing split/name files of ``dataset_names`` (default: all) under ``root``.

    Returns ``(downloaded paths, skipped existing paths)``. Raises ``RuntimeError``
    listing every file that failed, after trying all of them.
    """
    root = os.path.abspath(os.path.expanduser(root))
    if dataset_names:
        classes = [resolve_dataset(name) for name in dataset_names]
    else:
        classes = list(fetchable_datasets().values())

    downloaded, skipped, failures = [], [], []
    for dataset_class in classes:
        dataset_dir = os.path.join(root, dataset_class.dataset_dir)
        for file_name, file_id in downloadable_files(dataset_class).items():
            destination = os.path.join(dataset_dir, file_name)
            if os.path.isfile(destination):
                print(f"exists, skipped: {destination}")
                skipped.append(destination)
                continue
            os.makedirs(dataset_dir, exist_ok=True)
            print(f"downloading {destination}")
            try:
                gdrive_download(file_id, destination)
            except RuntimeError as err:
                failures.append(
                    f"{destination}: {err} (get it by hand from https://drive.google.com/file/d/{file_id}/view)"
                )
                continue
            downloaded.append(destination)
    if failures:
        raise RuntimeError(f"{len(failures)} download(s) failed:\n  " + "\n  ".join(failures))
    return downloaded, skipped


def main(argv=None):
    """Command-line entry point; returns the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", required=True, help="data root ($DATA) holding the dataset folders")
    parser.add_argument("--datasets", nargs="*", default=None, help="datasets to fetch (default: all)")
    args = parser.parse_args(argv)
    try:
        downloaded, skipped = fetch_splits(args.root, args.datasets)
    except (RuntimeError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"{len(downloaded)} file(s) downloaded, {len(skipped)} already present")
    return 0


if __name__ == "__main__":
    sys.exit(main())
