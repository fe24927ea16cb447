"""Datasets → one `.npz` of uint8 images (N, H, W, 3) and int64 labels per split.

`digits`: scikit-learn's bundled handwritten digits (8×8 grey), upscaled to 32×32 RGB: real images
that work offline. `cifar10`: the standard python archive `cifar-10-python.tar.gz`, md5-checked.
`imagefolder`: the user's own images, one subfolder per class (torchvision's ImageFolder layout,
JPEG/PNG), each resized (shorter side) and centre-cropped to `image_size`; or, for a model that is
not trained here (an ONNX file), a folder of images without class subfolders: unlabelled (label
`UNLABELLED`, no class names), their accuracy is the agreement with the fp32 model. All get a fixed,
seeded split into train / calibration / test; the class names are stored beside the images.
"""

from __future__ import annotations

import pickle
import tarfile
import urllib.request
from pathlib import Path

import numpy as np

from infbench.core.arguments import paths, schema_default
from infbench.core.integrity import DamagedInput, file_digest
from infbench.core.io import atomic_path

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"  # the config's default (cifar10_md5) is the same
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"

# torchvision's ImageFolder's (torchvision.datasets.folder.IMG_EXTENSIONS), without importing torchvision at parse time
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
DATASETS = ("digits", "cifar10", "imagefolder")
# ImageNet statistics: the input normalisation of a model that does not say otherwise (model.Facts).
IMAGENET_NORM = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
UNLABELLED = -1  # the label of an image of a folder without class subfolders


def load_digits_images(size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    grey = (digits.images / 16.0 * 255.0).astype(np.float32)  # (N, 8, 8), 0..255
    import torch
    import torch.nn.functional as F

    up = F.interpolate(torch.from_numpy(grey)[:, None], size=(size, size), mode="bilinear", align_corners=False)
    up = up.clamp(0, 255).round().to(torch.uint8)[:, 0].numpy()
    rgb = np.repeat(up[..., None], 3, axis=-1)
    return rgb, digits.target.astype(np.int64)


def md5sum(path: Path) -> str:
    return file_digest(path, "md5")


def fetch_cifar10(data_dir: Path, expected_md5: str = CIFAR10_MD5) -> Path:
    """The archive in `data_dir`, downloaded there first if missing and the network allows."""
    data_dir = Path(data_dir)
    archive = data_dir / CIFAR10_ARCHIVE
    if not archive.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        partial = archive.with_suffix(".part")
        try:
            urllib.request.urlretrieve(CIFAR10_URL, partial)
            partial.rename(archive)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise FileNotFoundError(
                f"CIFAR-10 archive not found at {archive} and the download from {CIFAR10_URL} failed "
                f"({exc}). Download '{CIFAR10_ARCHIVE}' on a machine with network access and put it "
                f"at {archive} (or set data_dir in the config to the folder that holds it)."
            ) from exc
    actual = md5sum(archive)
    if actual != expected_md5:
        raise ValueError(
            f"{archive} has md5 {actual}, expected {expected_md5}: it is damaged or not the CIFAR-10 archive: "
            f"delete it and download '{CIFAR10_ARCHIVE}' again (cifar10_md5 is for a copy of your own whose md5 "
            "you know from its source, not from this file)"
        )
    return archive


class ArraysOnly(pickle.Unpickler):
    """An unpickler that builds numpy arrays, lists, dicts, bytes and str only: the archive comes from the
    network, and pickle.load runs whatever callable a pickle names."""

    ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),  # how NumPy pickles an array (numpy 1's module name)
        ("numpy._core.multiarray", "_reconstruct"),  # numpy 2's
        ("_codecs", "encode"),  # how pickle protocol 2 writes bytes
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"the CIFAR-10 archive names {module}.{name}: not an array, list or dict")
        if module == "numpy.core.multiarray":
            module = "numpy._core.multiarray" if hasattr(np, "_core") else module
        return super().find_class(module, name)


def read_cifar10(archive: Path) -> tuple[np.ndarray, np.ndarray]:
    """All 60,000 images (train batches then test batch) as uint8 NHWC, and their labels."""
    images, labels = [], []
    names = [f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)] + ["cifar-10-batches-py/test_batch"]
    with tarfile.open(archive, "r:gz") as tar:
        for name in names:
            member = tar.extractfile(name)
            if member is None:
                raise ValueError(f"{archive} has no member {name}: not a CIFAR-10 python archive")
            batch = ArraysOnly(member, encoding="bytes").load()
            images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            labels.append(np.asarray(batch[b"labels"], dtype=np.int64))
    return np.concatenate(images), np.concatenate(labels)


def read_image_folder(root: Path, size: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Every image of `root/<class>/*.{jpg,jpeg,png,…}` as uint8 RGB `size`×`size` (shorter side resized,
    centre crop), its label and the class names (sorted, as torchvision's ImageFolder numbers them). A folder
    of images without class subfolders: the images, every label UNLABELLED, no class names."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(
            f"data_dir: image folder {root} does not exist; give a folder with one subfolder per class"
        )
    files = image_files(root)
    if not files and (loose := unlabelled_files(root)):
        return _read(loose, size), np.full(len(loose), UNLABELLED, dtype=np.int64), []
    classes = list(files)
    empty = [c for c in classes if not files[c]]
    if empty:  # dropping it would renumber every later class's label
        raise ValueError(
            f"data_dir: class folder {root / empty[0]} holds no image ({', '.join(IMAGE_SUFFIXES)})"
            + (f", nor do {', '.join(empty[1:])}" if len(empty) > 1 else "")
            + "; put its images there or remove the folder"
        )
    if len(classes) < 2:
        raise ValueError(
            f"data_dir: image folder {root} has {len(classes)} class subfolder(s) with images; "
            "a classifier needs at least 2: put each class's images in a subfolder of its own"
        )
    labels = [label for label, name in enumerate(classes) for _ in files[name]]
    return _read([f for name in classes for f in files[name]], size), np.asarray(labels, dtype=np.int64), classes


def _read(files: list[Path], size: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    images = []
    for f in files:
        try:
            with Image.open(f) as img:
                images.append(_square(img.convert("RGB"), size))
        except (UnidentifiedImageError, OSError) as exc:
            raise ValueError(f"data_dir: cannot read image {f} ({exc}); delete or replace it") from None
    return np.stack(images)


def image_files(root: Path) -> dict[str, list[Path]]:
    """{class: its image files, sorted} of an image folder, the classes sorted as ImageFolder numbers them."""
    classes = sorted(p.name for p in Path(root).iterdir() if p.is_dir() and not p.name.startswith("."))
    return {
        c: sorted(f for f in (Path(root) / c).rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
        for c in classes
    }


def unlabelled_files(root: Path) -> list[Path]:
    """The images lying in `root` itself (a folder without class subfolders: unlabelled images)."""
    return sorted(f for f in Path(root).iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())


def is_unlabelled_folder(root: Path) -> bool:
    """A folder of images without class subfolders (known before its images are read)."""
    root = Path(root)
    return root.is_dir() and not image_files(root) and bool(unlabelled_files(root))


def folder_listing(root: Path) -> str:
    """A digest of an image folder's file list (names, sizes, modification times): a param of prepare_data,
    so adding, removing or replacing an image rebuilds the dataset. Empty where the folder does not exist."""
    import hashlib

    root = Path(root)
    if not root.is_dir():
        return ""
    digest = hashlib.sha256()
    for files in [*image_files(root).values(), unlabelled_files(root)]:
        for f in files:
            st = f.stat()
            digest.update(f"{f.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _square(img, size: int) -> np.ndarray:
    """Shorter side to `size` (bilinear), then the centre `size`×`size` crop, as uint8 HWC."""
    from PIL import Image

    w, h = img.size
    scale = size / min(w, h)
    img = img.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BILINEAR)
    w, h = img.size
    left, top = (w - size) // 2, (h - size) // 2
    return np.asarray(img.crop((left, top, left + size, top + size)), dtype=np.uint8)


def split(
    images: np.ndarray, labels: np.ndarray, calib: int, test: int, seed: int, validation: int = 0
) -> dict[str, np.ndarray]:
    """Fixed seeded split: the first `test` of a permutation are test, the next `calib` calibration, the
    next `validation` validation (NNCF's accuracy control: images neither calibrated on nor tested)."""
    if calib + test + validation >= len(images):
        raise ValueError(
            f"calibration ({calib}) + test ({test}) + validation ({validation}) leave no training images of "
            f"{len(images)}"
        )
    order = np.random.default_rng(seed).permutation(len(images))
    held = test + calib + validation
    parts = {
        "test": order[:test],
        "calib": order[test : test + calib],
        "val": order[test + calib : held],
        "train": order[held:],
    }
    out = {}
    for name, idx in parts.items():
        out[f"{name}_x"], out[f"{name}_y"] = images[idx], labels[idx]
    return out


CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def prepare(
    dataset: str,
    data_dir: Path,
    out: Path,
    calib: int,  # images in the calibration split
    test: int,  # images in the test split
    seed: int,  # of the split's shuffle
    cifar_md5: str | None = None,
    image_size: int = 64,
    validation: int = 0,  # images in the validation split
):
    if dataset == "digits":
        (images, labels), classes = load_digits_images(), [str(d) for d in range(10)]
    elif dataset == "cifar10":
        images, labels = read_cifar10(fetch_cifar10(Path(data_dir), cifar_md5 or CIFAR10_MD5))
        classes = CIFAR10_CLASSES
    elif dataset == "imagefolder":
        images, labels, classes = read_image_folder(Path(data_dir), image_size)
    else:
        raise ValueError(f"unknown dataset '{dataset}' (choose {', '.join(DATASETS)})")
    arrays = {**split(images, labels, calib, test, seed, validation), "classes": np.asarray(classes, dtype=str)}

    with atomic_path(out) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    return {k: v.shape for k, v in arrays.items()}


def load_split(path: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """One split's images and labels; a missing or damaged file is named with the rule that rebuilds it."""
    try:
        with np.load(path) as data:
            arrays = {key: data[key] for key in data.files if key.startswith(f"{name}_")}
            splits = sorted({key.rsplit("_", 1)[0] for key in data.files if "_" in key})
    except FileNotFoundError:
        raise FileNotFoundError(f"dataset file {path} is missing; rebuild it with the rule 'prepare_data'") from None
    except Exception as exc:  # a truncated .npz raises BadZipFile, EOFError, zlib.error, ValueError…
        raise DamagedInput(path, "prepare_data", f"{type(exc).__name__}: {exc}") from exc
    if f"{name}_x" not in arrays or f"{name}_y" not in arrays:
        raise ValueError(f"dataset file {path} has no split '{name}' (has: {', '.join(splits)})")
    return arrays[f"{name}_x"], arrays[f"{name}_y"]


def class_names(path: Path) -> list[str]:
    """The dataset's class names (label i is the i-th); none for unlabelled images."""
    with np.load(path) as f:
        return [str(c) for c in f["classes"]]


def scoring_labels(labels: np.ndarray, reference_logits: np.ndarray) -> np.ndarray:
    """The labels a variant's top-1 is scored against: the images' own, or where they have none (UNLABELLED)
    the fp32 model's top-1, so that accuracy is the agreement with it (`labels_basis` says which)."""
    return reference_logits.argmax(1) if unlabelled(labels) else labels


def unlabelled(labels: np.ndarray) -> bool:
    return bool(len(labels)) and bool((np.asarray(labels) == UNLABELLED).all())


LABELLED = "labels"  # the labels basis of images with labels (a record without one was written before it existed)


def labels_basis(labels: np.ndarray) -> str:
    """What a top-1 figure is measured against (recorded beside it; the report says it)."""
    return "fp32 agreement (no labelled images)" if unlabelled(labels) else LABELLED


def scored_by_agreement(record: dict) -> bool:
    """Whether a record's top-1 (an accuracy record, a model's training metrics) is its agreement with fp32."""
    return record.get("labels", LABELLED) != LABELLED


def to_input(images: np.ndarray, size: int, norm=IMAGENET_NORM) -> np.ndarray:
    """uint8 NHWC images → float32 NCHW at `size`×`size` (bilinear), normalised with the model's
    (mean, std) `norm` (`model.Facts`): the model's input."""
    x = images.astype(np.float32).transpose(0, 3, 1, 2) / 255.0
    if x.shape[-1] != size:
        import torch
        import torch.nn.functional as F

        x = F.interpolate(torch.from_numpy(x), size=(size, size), mode="bilinear", align_corners=False).numpy()
    mean, std = (np.asarray(v, dtype=np.float32)[:, None, None] for v in norm)
    return np.ascontiguousarray((x - mean) / std, dtype=np.float32)


def add_parser(sub) -> None:
    """`infbench prepare-data`."""
    s = sub.add_parser("prepare-data", help="dataset → results/data/<name>.npz")
    s.add_argument("--dataset", required=True, choices=DATASETS)
    s.add_argument("--data-dir", type=Path, default=Path(schema_default("data_dir")))
    paths(s, "--out")
    s.add_argument("--calib", type=int, default=schema_default("split.calibration"))
    s.add_argument("--test", type=int, default=schema_default("split.test"))
    s.add_argument("--seed", type=int, default=schema_default("split.seed"))
    s.add_argument("--validation", type=int, default=schema_default("split.validation"))
    s.add_argument("--cifar-md5", default=None, help="expected md5 of the archive; default: CIFAR10_MD5")
    s.add_argument(
        "--image-size",
        type=int,
        default=schema_default("data_image_size"),
        help="imagefolder: the side images are stored at",
    )
    s.set_defaults(func=_command)


def _command(a) -> None:
    shapes = prepare(a.dataset, a.data_dir, a.out, a.calib, a.test, a.seed, a.cifar_md5, a.image_size, a.validation)
    print("wrote", a.out, {k: list(v) for k, v in shapes.items()})
