"""Datasets: the CIFAR-10 reader on an archive in the exact python format, the digits split."""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile

import numpy as np
import pytest

from infbench.stages import data


def make_cifar_archive(path, per_batch=7, seed=0):
    """A cifar-10-python.tar.gz with the real layout: 5 data batches + test batch, pickled dicts."""
    rng = np.random.default_rng(seed)
    batches = {}
    with tarfile.open(path, "w:gz") as tar:
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            pixels = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
            labels = rng.integers(0, 10, size=per_batch).tolist()
            batches[name] = (pixels, labels)
            blob = pickle.dumps(
                {
                    b"batch_label": name.encode(),
                    b"labels": labels,
                    b"data": pixels,
                    b"filenames": [b"x.png"] * per_batch,
                },
                protocol=2,
            )
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return batches


def test_cifar_reader_decodes_the_python_archive(tmp_path):
    archive = tmp_path / data.CIFAR10_ARCHIVE
    batches = make_cifar_archive(archive)
    images, labels = data.read_cifar10(archive)
    assert images.shape == (42, 32, 32, 3) and images.dtype == np.uint8
    first_pixels, first_labels = batches["data_batch_1"]
    # Row-major CHW planes → HWC: the red plane is the first 1024 bytes.
    assert np.array_equal(images[0, :, :, 0].ravel(), first_pixels[0, :1024])
    assert np.array_equal(images[0, :, :, 2].ravel(), first_pixels[0, 2048:])
    assert labels[:7].tolist() == first_labels
    assert labels[-7:].tolist() == batches["test_batch"][1]


def test_cifar_prepare_checks_md5_and_splits(tmp_path):
    archive = tmp_path / data.CIFAR10_ARCHIVE
    make_cifar_archive(archive)
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    out = tmp_path / "cifar10.npz"
    shapes = data.prepare("cifar10", tmp_path, out, calib=5, test=10, seed=1, cifar_md5=md5)
    assert shapes["train_x"] == (27, 32, 32, 3) and shapes["test_x"] == (10, 32, 32, 3)
    with pytest.raises(ValueError, match="md5"):
        data.prepare("cifar10", tmp_path, out, calib=5, test=10, seed=1)  # the real md5 does not match


def test_cifar_md5_mismatch_does_not_offer_the_files_own_md5(tmp_path):
    """Issue 35 item 8: telling the user to set cifar10_md5 to the file's own md5 disables the only check."""
    archive = tmp_path / data.CIFAR10_ARCHIVE
    make_cifar_archive(archive)
    actual = hashlib.md5(archive.read_bytes()).hexdigest()
    with pytest.raises(ValueError, match="delete it") as err:
        data.fetch_cifar10(tmp_path)
    assert f"cifar10_md5: {actual}" not in str(err.value) and "set cifar10_md5" not in str(err.value)


class RunsCommand:
    """A pickle that calls a function when loaded (what a tampered archive could hold)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_cifar_reader_refuses_a_pickle_that_calls_a_function(tmp_path):
    """Issue 35 item 8: the archive is read with an unpickler that builds arrays, lists, dicts, bytes, str only."""
    archive, marker = tmp_path / data.CIFAR10_ARCHIVE, tmp_path / "ran"
    make_cifar_archive(archive)
    with tarfile.open(archive, "r:gz") as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    members["cifar-10-batches-py/data_batch_1"] = pickle.dumps({b"data": RunsCommand(marker)}, protocol=2)
    with tarfile.open(archive, "w:gz") as tar:
        for name, blob in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    with pytest.raises(pickle.UnpicklingError, match="io.open|builtins.open"):
        data.read_cifar10(archive)
    assert not marker.exists()


def test_missing_cifar_archive_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "CIFAR10_URL", "http://127.0.0.1:9/cifar-10-python.tar.gz")  # nothing listens
    with pytest.raises(FileNotFoundError, match=str(tmp_path / data.CIFAR10_ARCHIVE)):
        data.fetch_cifar10(tmp_path)


def test_digits_split_is_fixed_and_disjoint(tmp_path):
    out_a, out_b = tmp_path / "a.npz", tmp_path / "b.npz"
    data.prepare("digits", tmp_path, out_a, calib=100, test=300, seed=0)
    data.prepare("digits", tmp_path, out_b, calib=100, test=300, seed=0)
    a_x, a_y = data.load_split(out_a, "test")
    b_x, _ = data.load_split(out_b, "test")
    assert a_x.shape == (300, 32, 32, 3) and np.array_equal(a_x, b_x)
    train_x, _ = data.load_split(out_a, "train")
    calib_x, _ = data.load_split(out_a, "calib")
    assert len(train_x) + len(calib_x) + len(a_x) == 1797
    assert set(np.unique(a_y)) == set(range(10))


def test_to_input_normalises_and_resizes():
    images = np.full((2, 32, 32, 3), 255, dtype=np.uint8)
    x = data.to_input(images, 64)
    assert x.shape == (2, 3, 64, 64) and x.dtype == np.float32
    mean, std = (np.asarray(v) for v in data.IMAGENET_NORM)
    np.testing.assert_allclose(x[0, :, 0, 0], (1 - mean) / std, rtol=1e-6)
    half = data.to_input(images, 32, ((0.5,) * 3, (0.5,) * 3))  # a model's own normalisation (timm's ViT)
    np.testing.assert_allclose(half[0, :, 0, 0], 1.0, rtol=1e-6)
