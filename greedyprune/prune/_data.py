"""Data sources: an ImageNet-layout folder, scikit-learn's digits upscaled, synthetic tensors."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset, Subset, TensorDataset

from greedyprune.errors import (
    GreedypruneError,
    GreedypruneFileError,
    check_int,
    refuse,
)

__all__ = [
    "DataSpec",
    "check_images",
    "class_count",
    "eval_indices",
    "labels_of",
    "load_data",
    "parse_data",
    "seeded_draws",
    "write_image_folder",
]

# What torchvision's ImageFolder accepts as an image file.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class DataSpec:
    """A parsed ``--data`` value: kind is ``folder``, ``digits`` or ``synthetic``."""

    kind: str
    path: str | None = None


def parse_data(spec: str) -> DataSpec:
    """``folder:PATH`` | ``digits`` | ``synthetic`` -> DataSpec (checks that the folder exists)."""
    if not isinstance(spec, str):
        raise refuse("data", spec, "a string", wrong_type=True)
    if spec in ("digits", "synthetic"):
        return DataSpec(spec)
    if spec.startswith("folder:"):
        path = Path(spec[len("folder:") :]).expanduser()
        if not path.is_dir():
            raise GreedypruneFileError(
                f"data={spec!r}: folder {str(path)!r} does not exist; pass folder:PATH with PATH/train "
                "and PATH/val in ImageNet layout (one subfolder per class)"
            )
        for sub in ("train", "val"):
            if not (path / sub).is_dir():
                raise GreedypruneFileError(
                    f"data={spec!r}: {str(path / sub)!r} is missing; the folder needs train/ and val/ "
                    "subfolders, one folder per class inside each"
                )
        return DataSpec("folder", str(path))
    raise GreedypruneError(f"data={spec!r} is not one of folder:PATH, digits, synthetic")


def _digits(image_size: int) -> tuple[Dataset, Dataset, int]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(d.target, dtype=torch.long)
    idx = torch.arange(len(y)).numpy()
    # Fixed split (seed 0, stratified) so every run and every method sees the same test set.
    tr, te = train_test_split(idx, test_size=0.25, random_state=0, stratify=d.target)
    x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    mean, std = x[tr].mean(), x[tr].std()
    x = ((x - mean) / std).expand(-1, 3, -1, -1).contiguous()
    tr, te = torch.as_tensor(tr), torch.as_tensor(te)
    return TensorDataset(x[tr], y[tr]), TensorDataset(x[te], y[te]), 10


def _synthetic(image_size: int, num_classes: int, n_train: int, n_test: int):
    g = torch.Generator().manual_seed(0)
    xt = torch.randn(n_train, 3, image_size, image_size, generator=g)
    yt = torch.randint(0, num_classes, (n_train,), generator=g)
    xv = torch.randn(n_test, 3, image_size, image_size, generator=g)
    yv = torch.randint(0, num_classes, (n_test,), generator=g)
    return TensorDataset(xt, yt), TensorDataset(xv, yv), num_classes


@contextlib.contextmanager
def seeded_draws(seed: int, device: torch.device | str = "cpu") -> Iterator[None]:
    """Inside the block torch's global generators start from ``seed``; after it they are as they
    were. The draws that take no generator (torchvision's random crops and flips, dropout, the
    seeds of loader workers without one) then repeat with the run's seed; on a GPU only the CPU's
    generator and ``device``'s are restored."""
    device = torch.device(device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(int(seed))
        yield


def read_image(path: str):
    """One image file as an RGB PIL image (what ``ImageFolder`` reads); a file that cannot be
    decoded (truncated, damaged) is bad input naming the file. The headers were checked before
    the run folder was made; decoding every image then would take hours on ImageNet, so a file
    damaged past its header is found here, mid-run: the units already finished are kept."""
    from PIL import Image

    try:
        with open(path, "rb") as f, Image.open(f) as im:
            return im.convert("RGB")
    except Exception as exc:  # any failure to decode a user file is bad input
        detail = " ".join(str(exc).split())[:120]
        raise GreedypruneError(
            f"image {path!r} cannot be decoded ({type(exc).__name__}: {detail}); replace or remove "
            "it and run again: finished units are kept"
        ) from None


def _folder(path: str, image_size: int, crop_scale: tuple[float, float]):
    from torchvision import datasets, transforms

    norm = transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    resize = round(image_size * 256 / 224)
    train_tf = transforms.Compose(
        [
            transforms.RandomResizedCrop(image_size, scale=crop_scale),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            norm,
        ]
    )
    val_tf = transforms.Compose(
        [transforms.Resize(resize), transforms.CenterCrop(image_size), transforms.ToTensor(), norm]
    )
    try:
        train = datasets.ImageFolder(
            str(Path(path) / "train"), transform=train_tf, loader=read_image
        )
        val = datasets.ImageFolder(str(Path(path) / "val"), transform=val_tf, loader=read_image)
    except (FileNotFoundError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0][:200]
        raise GreedypruneError(
            f"data folder {path!r} holds no usable images ({first}); put images "
            f"({', '.join(IMAGE_EXTENSIONS[:3])}, ...) in train/CLASS/ and val/CLASS/"
        ) from None
    if train.classes != val.classes:
        raise GreedypruneError(
            f"data folder {path!r}: train/ and val/ hold different class folders"
        )
    if len(train.classes) < 2:
        raise GreedypruneError(
            f"data folder {path!r} holds {len(train.classes)} class folder "
            f"({', '.join(train.classes)}); classification needs at least 2: add class folders "
            "to train/ and val/"
        )
    return train, val, len(train.classes)


def load_data(
    spec: str | DataSpec,
    image_size: int,
    *,
    num_classes: int = 1000,
    synthetic_size: tuple[int, int] = (512, 256),
    crop_scale: tuple[float, float] = (0.08, 1.0),
) -> tuple[Dataset, Dataset, int]:
    """(train, test, n_classes); images are float tensors [3, image_size, image_size].

    ``digits``: scikit-learn's 1797 handwritten 8x8 digits, bilinearly upscaled, replicated to three
    channels, standardised with the training mean/std; fixed stratified split 1347 / 450.
    ``synthetic``: Gaussian images and random labels (for throughput only).
    ``folder:PATH``: ImageNet layout with standard transforms (random resized crop of area
    ``crop_scale`` + flip for training; resize to 256/224 of the size and centre crop for testing).
    """
    check_int("image_size", image_size, minimum=8)
    lo, hi = crop_scale
    if not 0 < lo <= hi <= 1:
        raise GreedypruneError(
            f"crop_scale={crop_scale!r} must satisfy 0 < low <= high <= 1, e.g. (0.2, 1)"
        )
    spec = parse_data(spec) if isinstance(spec, str) else spec
    if spec.kind == "digits":
        return _digits(image_size)
    if spec.kind == "synthetic":
        return _synthetic(image_size, num_classes, *synthetic_size)
    return _folder(spec.path, image_size, (float(lo), float(hi)))


def labels_of(dataset: Dataset) -> Tensor:
    """The labels [n] of a dataset, read without decoding images where the dataset allows it
    (ImageFolder's ``targets``, a TensorDataset's second tensor, a Subset of either)."""
    if isinstance(dataset, Subset):
        return labels_of(dataset.dataset)[torch.as_tensor(dataset.indices, dtype=torch.long)]
    targets = getattr(dataset, "targets", None)
    if targets is not None:
        return torch.as_tensor(targets)
    tensors = getattr(dataset, "tensors", None)
    if tensors is not None and len(tensors) >= 2:
        return tensors[1]
    return torch.as_tensor([int(dataset[i][1]) for i in range(len(dataset))])


def eval_indices(n_total: int, *, n_eval: int | None = None, every: int | None = None) -> list[int]:
    """Indices of an evaluation set spread over the whole training set: every ``every``-th image
    (the authors take every 200th), or, with ``n_eval``, every ``max(1, n_total // n_eval)``-th
    image, ``n_eval`` of them. Never the first n: an ImageNet-layout folder is sorted by class."""
    if (n_eval is None) == (every is None):
        raise GreedypruneError("pass exactly one of n_eval (a count) and every (a stride)")
    if every is not None:
        check_int("every", every, minimum=1, fix="the evaluation stride (the authors: 200)")
        return list(range(0, n_total, every))
    check_int("n_eval", n_eval, minimum=1)
    stride = max(1, n_total // n_eval)
    return list(range(0, n_total, stride))[:n_eval]


def class_count(labels: Tensor) -> int:
    """The number of distinct classes among ``labels``."""
    return int(torch.unique(torch.as_tensor(labels)).numel())


def check_images(dataset: Dataset, *, workers: int = 8, progress: bool = False) -> int:
    """Open the header of every image file of a folder dataset (``ImageFolder``); raise
    ``ValueError`` naming the first file PIL cannot read. Returns the number of files checked (0
    for in-memory datasets). Only the headers are read, so a 1.28M-image folder takes minutes,
    not hours; ``progress`` shows a bar over the files."""
    samples = getattr(dataset, "samples", None)
    if samples is None:
        return 0
    from concurrent.futures import ThreadPoolExecutor

    from PIL import Image

    def bad(path: str) -> str | None:
        try:
            with Image.open(path) as im:
                im.size  # noqa: B018  (the header is parsed on open; size proves it)
        except Exception as exc:  # any failure to parse a user file is bad input
            return f"{path!r} ({type(exc).__name__})"
        return None

    from tqdm.auto import tqdm

    paths = [p for p, _ in samples]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        found_all = pool.map(bad, paths, chunksize=256)
        bar = tqdm(found_all, total=len(paths), desc="checking images", disable=not progress)
        for found in bar:
            if found is not None:
                raise GreedypruneError(
                    f"unreadable image {found}: remove or replace the file, then run again"
                )
    return len(paths)


def write_image_folder(
    path: str | os.PathLike,
    *,
    n_classes: int,
    n_train: int,
    n_val: int,
    size: int = 256,
    seed: int = 0,
    ext: str = ".JPEG",
) -> Path:
    """Write an ImageNet-layout folder of generated images (``path/train/CLASS/*.JPEG``,
    ``path/val/CLASS/*.JPEG``, ``n_train`` and ``n_val`` per class): the stand-in for ImageNet in
    rehearsals and tests, since no data set is downloaded here.

    Class c is a colour (hue c / n_classes) with stripes at a class-dependent angle and
    frequency, plus per-image noise, shift and brightness, so a CNN can learn the classes and
    their accuracy is not trivial.
    """
    import numpy as np
    from PIL import Image

    root = Path(path)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    width = len(str(n_classes - 1))
    for split, count in (("train", n_train), ("val", n_val)):
        for c in range(n_classes):
            folder = root / split / f"n{c:0{width}d}"
            folder.mkdir(parents=True, exist_ok=True)
            hue = 2 * np.pi * c / n_classes
            colour = 0.5 + 0.4 * np.cos(hue + np.array([0.0, 2.1, 4.2], dtype=np.float32))
            angle = np.pi * ((c * 7) % n_classes) / n_classes
            freq = 3 + (c % 5) * 2
            for i in range(count):
                phase = rng.uniform(0, 2 * np.pi)
                stripes = np.sin(
                    2 * np.pi * freq * (np.cos(angle) * xx + np.sin(angle) * yy) + phase
                )
                img = colour * (0.75 + 0.25 * stripes[..., None]) * rng.uniform(0.8, 1.2)
                img = img + rng.normal(0, 0.08, img.shape)
                pixels = (np.clip(img, 0, 1) * 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{split}_{c}_{i}{ext}", quality=90)
    return root
