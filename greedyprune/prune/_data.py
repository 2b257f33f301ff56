"""Data sources: an ImageNet-layout folder, scikit-learn's digits upscaled, synthetic tensors."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, TensorDataset

__all__ = ["DataSpec", "load_data", "parse_data"]


@dataclass(frozen=True)
class DataSpec:
    """A parsed ``--data`` value: kind is ``folder``, ``digits`` or ``synthetic``."""

    kind: str
    path: str | None = None


def parse_data(spec: str) -> DataSpec:
    """``folder:PATH`` | ``digits`` | ``synthetic`` -> DataSpec (checks that the folder exists)."""
    if not isinstance(spec, str):
        raise TypeError(f"data must be a string, got {type(spec).__name__}")
    if spec in ("digits", "synthetic"):
        return DataSpec(spec)
    if spec.startswith("folder:"):
        path = Path(spec[len("folder:") :]).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(
                f"data={spec!r}: folder {str(path)!r} does not exist; pass folder:PATH with PATH/train "
                "and PATH/val in ImageNet layout (one subfolder per class)"
            )
        for sub in ("train", "val"):
            if not (path / sub).is_dir():
                raise FileNotFoundError(
                    f"data={spec!r}: {str(path / sub)!r} is missing; the folder needs train/ and val/ "
                    "subfolders, one folder per class inside each"
                )
        return DataSpec("folder", str(path))
    raise ValueError(f"data={spec!r} is not one of folder:PATH, digits, synthetic")


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


def _folder(path: str, image_size: int):
    from torchvision import datasets, transforms

    norm = transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    resize = round(image_size * 256 / 224)
    train_tf = transforms.Compose(
        [
            transforms.RandomResizedCrop(image_size),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            norm,
        ]
    )
    val_tf = transforms.Compose(
        [transforms.Resize(resize), transforms.CenterCrop(image_size), transforms.ToTensor(), norm]
    )
    train = datasets.ImageFolder(str(Path(path) / "train"), transform=train_tf)
    val = datasets.ImageFolder(str(Path(path) / "val"), transform=val_tf)
    if train.classes != val.classes:
        raise ValueError(f"data folder {path!r}: train/ and val/ hold different class folders")
    return train, val, len(train.classes)


def load_data(
    spec: str | DataSpec,
    image_size: int,
    *,
    num_classes: int = 1000,
    synthetic_size: tuple[int, int] = (512, 256),
) -> tuple[Dataset, Dataset, int]:
    """(train, test, n_classes); images are float tensors [3, image_size, image_size].

    ``digits``: scikit-learn's 1797 handwritten 8x8 digits, bilinearly upscaled, replicated to three
    channels, standardised with the training mean/std; fixed stratified split 1347 / 450.
    ``synthetic``: Gaussian images and random labels (for throughput only).
    ``folder:PATH``: ImageNet layout with standard transforms (random resized crop + flip for
    training; resize to 256/224 of the size and centre crop for testing).
    """
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 8:
        raise ValueError(f"image_size must be an int >= 8, got {image_size!r}")
    spec = parse_data(spec) if isinstance(spec, str) else spec
    if spec.kind == "digits":
        return _digits(image_size)
    if spec.kind == "synthetic":
        return _synthetic(image_size, num_classes, *synthetic_size)
    return _folder(spec.path, image_size)
