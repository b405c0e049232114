"""Find, download (with SHA256 check) and load CLIP weights; the matching image preprocessing.

``load`` accepts an OpenAI model name (downloaded once into a cache folder) or a path to a local
checkpoint: an OpenAI JIT archive or a ``torch.save``d state dict with OpenAI key names.
"""
import hashlib
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import warnings
import zipfile
from typing import Callable, List, Optional, Tuple, Union

import torch
from PIL import Image
from tqdm import tqdm

from . import openclip
from .model import CLIP, build_model

__all__ = ["available_models", "load", "download", "default_cache_dir", "make_preprocess",
           "read_state_dict", "CLIP_MEAN", "CLIP_STD", "MODEL_URLS", "BUNDLED_MODELS"]

CLIP_MEAN = openclip.OPENAI_PREPROCESS["mean"]
CLIP_STD = openclip.OPENAI_PREPROCESS["std"]

_URL_ROOT = "https://openaipublic.azureedge.net/clip/models"
# The second-to-last path component of every URL is the file's SHA256.
MODEL_URLS = {
    "RN50": f"{_URL_ROOT}/afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762/RN50.pt",
    "RN101": f"{_URL_ROOT}/8fa8567bab74a42d41c5915025a8e4538c3bdbe8804a470a72f30b0d94fab599/RN101.pt",
    "RN50x4": f"{_URL_ROOT}/7e526bd135e493cef0776de27d5f42653e6b4c8bf9e0f653bb11773263205fdd/RN50x4.pt",
    "RN50x16": f"{_URL_ROOT}/52378b407f34354e150460fe41077663dd5b39c54cd0bfd2b27167a4a06ec9aa/RN50x16.pt",
    "RN50x64": f"{_URL_ROOT}/be1cfb55d75a9666199fb2206c106743da0f6468c9d327f3e0d0a543a9919d9c/RN50x64.pt",
    "ViT-B/32": f"{_URL_ROOT}/40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt",
    "ViT-B/16": f"{_URL_ROOT}/5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f/ViT-B-16.pt",
    "ViT-L/14": f"{_URL_ROOT}/b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836/ViT-L-14.pt",
    "ViT-L/14@336px": f"{_URL_ROOT}/3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02/ViT-L-14-336px.pt",
}

# Checkpoints shipped inside this repository, loaded by name without any download.
BUNDLED_MODELS = {
    "mini-clip": os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights", "mini-clip.pt"),
}

_CHUNK_BYTES = 1 << 20


def available_models() -> List[str]:
    """Names :func:`load` accepts: the OpenAI models it can download and the bundled ones."""
    return list(MODEL_URLS) + list(BUNDLED_MODELS)


def default_cache_dir() -> str:
    """``$CLIP_CACHE_DIR`` if set, else ``~/.cache/clip``."""
    return os.environ.get("CLIP_CACHE_DIR") or os.path.expanduser("~/.cache/clip")


def _sha256_of_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download(url: str, root: Optional[str] = None, expected_sha256: Optional[str] = None,
             urlopen: Optional[Callable] = None) -> str:
    """Download ``url`` into folder ``root`` (default :func:`default_cache_dir`); return its path.

    The SHA256 defaults to the URL's second-to-last path component (OpenAI's convention). A cached
    file with the right checksum is reused; one with a wrong checksum is downloaded again. Data is
    streamed into a temporary file in the same folder and renamed into place only after the
    checksum matches, so the final name never holds a partial or corrupt file. ``urlopen`` is
    injectable (default: ``urllib.request.urlopen``, looked up at call time so it can be
    patched); any ``urllib`` URL works, including ``file://``.
    """
    urlopen = urlopen or urllib.request.urlopen
    root = root or default_cache_dir()
    os.makedirs(root, exist_ok=True)
    url_path = urllib.parse.unquote(urllib.parse.urlparse(url).path)
    filename = os.path.basename(url_path)
    expected_sha256 = (expected_sha256 or url_path.split("/")[-2]).lower()
    target = os.path.join(root, filename)

    if os.path.exists(target):
        if not os.path.isfile(target):
            raise RuntimeError(f"{target} exists and is not a regular file")
        if _sha256_of_file(target) == expected_sha256:
            return target
        warnings.warn(f"{target} exists but its SHA256 does not match {expected_sha256}; "
                      f"downloading it again")

    handle, temp_path = tempfile.mkstemp(prefix=f".{filename}.", suffix=".part", dir=root)
    try:
        with os.fdopen(handle, "wb") as output:
            try:
                actual_sha256 = _stream_to_file(urlopen, url, output, filename)
            except (urllib.error.URLError, OSError) as error:
                reason = getattr(error, "reason", error)
                raise RuntimeError(
                    f"Could not download {url} ({reason}); download it manually and place it "
                    f"at {target}") from error
        if actual_sha256 != expected_sha256:
            raise RuntimeError(f"SHA256 mismatch for {url}: expected {expected_sha256}, got "
                               f"{actual_sha256}; the download was discarded")
        os.replace(temp_path, target)
    finally:
        if os.path.exists(temp_path):
            os.remove(temp_path)
    return target


def _stream_to_file(urlopen: Callable, url: str, output, label: str) -> str:
    """Copy the body of ``url`` into the open binary file ``output`` with a progress bar;
    return the SHA256 of what was written."""
    digest = hashlib.sha256()
    with urlopen(url) as source:
        headers = getattr(source, "headers", None)
        size = headers.get("Content-Length") if headers is not None else None
        total = int(size) if isinstance(size, str) and size.isdigit() else None
        with tqdm(total=total, unit="B", unit_scale=True, desc=label, ncols=80) as progress:
            for chunk in iter(lambda: source.read(_CHUNK_BYTES), b""):
                output.write(chunk)
                digest.update(chunk)
                progress.update(len(chunk))
    return digest.hexdigest()


def _is_torchscript_archive(path: str) -> bool:
    """TorchScript archives are zip files with a ``constants.pkl`` / ``code/`` entry; torch.save
    zip files are not."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("/constants.pkl") or "/code/" in name
                   for name in archive.namelist())


def _looks_like_torch_file(path: str) -> bool:
    """A zip archive (torch.save / TorchScript) or a legacy pickle (first byte 0x80 = PROTO)."""
    with open(path, "rb") as handle:
        head = handle.read(4)
    return head.startswith(b"PK") or head[:1] == b"\x80"


def read_state_dict(path: str) -> dict:
    """The CLIP state dict stored in ``path`` (OpenAI JIT archive or ``torch.save``d dict)."""
    if not _looks_like_torch_file(path):
        raise RuntimeError(f"{path} is not a CLIP checkpoint (not a PyTorch file); the backbone is an OpenAI "
                           f"model name ({', '.join(available_models()[:3])}, ...) or a CLIP weights file")
    try:
        if _is_torchscript_archive(path):
            with warnings.catch_warnings():
                # TorchScript is deprecated upstream, but OpenAI's released files are archives.
                warnings.simplefilter("ignore", FutureWarning)
                return torch.jit.load(path, map_location="cpu").state_dict()
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise RuntimeError(f"Could not read CLIP weights from {path} (damaged or not a CLIP checkpoint): "
                           f"{first}") from error
    if not isinstance(loaded, dict):
        raise RuntimeError(f"{path} does not hold a state dict (found {type(loaded).__name__})")
    return loaded


def _convert_to_rgb(image: Image.Image) -> Image.Image:
    # A module-level function (not a lambda) keeps the transform picklable for worker processes.
    return image.convert("RGB")


def make_preprocess(resolution: int, mean: Tuple[float, ...] = CLIP_MEAN, std: Tuple[float, ...] = CLIP_STD,
                    interpolation: str = "bicubic", resize_mode: str = "shortest") -> Callable:
    """CLIP's test-time image transform for a model with input size ``resolution``.

    The defaults are OpenAI's preprocessing; open_clip models pass their own (``resize_mode``
    ``shortest``: shorter side to ``resolution`` then centre crop; ``squash``: both sides to
    ``resolution``, aspect ratio not kept).

    Built from ``dassl``'s torchvision-free PIL transforms (identical results to torchvision's
    ``Resize``/``CenterCrop``/``ToTensor``/``Normalize``; importing torchvision costs ~1.6 s).
    Imported here rather than at module level so that ``import clip`` stays independent of
    ``dassl``.
    """
    from dassl.data.transforms.pil_transforms import (CenterCrop, Compose, InterpolationMode,
                                                      Normalize, Resize, ToTensor)

    modes = {mode.value: mode for mode in InterpolationMode}
    if interpolation not in modes:
        raise ValueError(f"interpolation {interpolation!r} is not one of {sorted(modes)}")
    if resize_mode == "shortest":
        resize = [Resize(resolution, interpolation=modes[interpolation]), CenterCrop(resolution)]
    elif resize_mode == "squash":
        resize = [Resize((resolution, resolution), interpolation=modes[interpolation])]
    else:
        raise ValueError(f"resize_mode {resize_mode!r} is not supported (shortest, squash)")
    return Compose(resize + [_convert_to_rgb, ToTensor(), Normalize(tuple(mean), tuple(std))])


def load(name_or_path: str, device: Union[str, torch.device] = "cpu",
         download_root: Optional[str] = None, jit: bool = False, pretrained: Optional[str] = None,
         tag: Optional[str] = None, tokenizer: Optional[str] = None) -> Tuple[CLIP, Callable]:
    """Load a CLIP model by name (OpenAI's, or ``mini-clip`` bundled in this repository) or from a
    local checkpoint file; or an open_clip model, ``openclip:<model>`` (an open_clip model name or a
    config JSON path) with ``pretrained=<weights file>`` (see :mod:`clip.openclip`; ``tag`` names the
    open_clip pretrained tag of the weights where the model's tags differ in preprocessing; ``tokenizer``
    the local folder of a Hugging Face tokenizer, for SigLIP).

    ``jit`` exists only for call compatibility with OpenAI's ``clip.load``; the TorchScript model
    itself cannot take prompts or hooks, so only ``jit=False`` is accepted.

    Returns ``(model, preprocess)``: the model in fp32 and eval mode on ``device``, and the
    matching PIL-image transform. Names are downloaded into ``download_root`` (default
    ``$CLIP_CACHE_DIR`` or ``~/.cache/clip``) unless already cached.
    """
    if jit:
        raise ValueError("clip.load(jit=True) is not supported: prompt learning needs the "
                         "Python model; use jit=False (weights of JIT archives load fine)")
    name_or_path = str(name_or_path)
    if openclip.is_openclip_name(name_or_path):
        if not pretrained:
            raise ValueError(f"clip.load({name_or_path!r}) needs pretrained=<weights file> (open_clip's .bin, .pt or "
                             f".safetensors; nothing is downloaded)")
        model = openclip.build_openclip(name_or_path, pretrained, tag, tokenizer).to(device)
        config = openclip.preprocess_config(name_or_path, tag)
        return model, make_preprocess(model.image_resolution, config["mean"], config["std"],
                                      config["interpolation"], config["resize_mode"])
    if pretrained is not None or tag is not None or tokenizer is not None:
        raise ValueError(f"clip.load: pretrained=, tag= and tokenizer= are for openclip:<model> names, not "
                         f"{name_or_path!r}")
    if name_or_path in MODEL_URLS:
        model_path = download(MODEL_URLS[name_or_path], download_root)
    elif name_or_path in BUNDLED_MODELS:
        model_path = BUNDLED_MODELS[name_or_path]
        if not os.path.isfile(model_path):
            raise RuntimeError(f"the bundled model {name_or_path!r} is missing from {model_path}; "
                               f"restore it with git or rebuild it with tools/pretrain_mini_clip.py")
    elif os.path.isfile(os.path.expanduser(name_or_path)):
        model_path = os.path.expanduser(name_or_path)
    else:
        raise RuntimeError(f"CLIP model {name_or_path!r} is neither a known model name nor an "
                           f"existing file; available models = {available_models()}")
    model = build_model(read_state_dict(model_path)).float().to(device).eval()
    return model, make_preprocess(model.image_resolution)


# Names used by code written against OpenAI's / CoOp's ``clip`` package.
_MODELS = MODEL_URLS
_download = download
_transform = make_preprocess
