"""The user's image folder (issue 35 item 6): every extension torchvision's ImageFolder reads, an empty class
folder named (never dropped, which would renumber the labels), the folder's file list an input of
prepare_data (a real Snakemake run rebuilds the dataset when an image is added), data_image_size checked
against the sizes the study uses."""

from __future__ import annotations

import copy
import time

import numpy as np
import pytest
from conftest import TINY_CONFIG, copy_workflow, planned_jobs, snakemake
from test_bad_config import parse_time_error

from infbench.stages import data
from infbench.study import grid


def write_images(root, classes=("cat", "dog"), per_class=6, suffixes=(".png", ".jpg")):
    from PIL import Image

    rng = np.random.default_rng(0)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 60, (40, 48, 3), dtype=np.uint8)
            pixels[..., c % 3] += 180
            Image.fromarray(pixels).save(root / name / f"{i}{suffixes[i % len(suffixes)]}")
    return root


def test_every_extension_imagefolder_reads(tmp_path):
    from torchvision.datasets.folder import IMG_EXTENSIONS

    assert set(data.IMAGE_SUFFIXES) == set(IMG_EXTENSIONS)
    folder = write_images(tmp_path / "images", suffixes=(".webp", ".bmp", ".tif", ".png"), per_class=8)
    x, y, classes = data.read_image_folder(folder, 32)
    assert x.shape == (16, 32, 32, 3) and classes == ["cat", "dog"] and list(np.bincount(y)) == [8, 8]


def test_an_empty_class_folder_is_named(tmp_path):
    folder = write_images(tmp_path / "images", classes=("ant", "cat", "dog"))
    for f in (folder / "cat").iterdir():
        f.unlink()
    (folder / "cat" / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match=r"class folder .*/cat holds no image"):
        data.read_image_folder(folder, 32)


def test_the_file_list_changes_with_the_images(tmp_path):
    folder = write_images(tmp_path / "images")
    before = data.folder_listing(folder)
    assert before == data.folder_listing(folder)
    write_images(tmp_path / "more", classes=("cat",), per_class=1)
    (tmp_path / "more" / "cat" / "0.png").rename(folder / "cat" / "new.png")
    assert data.folder_listing(folder) != before


def test_a_folder_without_class_subfolders_is_unlabelled_images(tmp_path):
    write_images(tmp_path / "sorted", per_class=10)
    folder = tmp_path / "loose"
    folder.mkdir()
    for i, f in enumerate(sorted((tmp_path / "sorted").rglob("*.*"))):
        f.rename(folder / f"{i}{f.suffix}")
    assert data.is_unlabelled_folder(folder) and not data.is_unlabelled_folder(tmp_path / "sorted")
    x, y, classes = data.read_image_folder(folder, 32)
    assert x.shape == (20, 32, 32, 3) and classes == [] and set(y) == {data.UNLABELLED}
    out = tmp_path / "data.npz"
    data.prepare("imagefolder", folder, out, calib=4, test=6, seed=0, image_size=32)
    _, test_y = data.load_split(out, "test")
    assert data.class_names(out) == [] and data.unlabelled(test_y)
    assert data.labels_basis(test_y) == "fp32 agreement (no labelled images)"
    reference = np.eye(3)[[0, 2, 1, 2, 0, 1]]  # the fp32 model's logits: its top-1 becomes the label
    assert list(data.scoring_labels(test_y, reference)) == [0, 2, 1, 2, 0, 1]
    before = data.folder_listing(folder)
    (folder / "0.png").rename(folder / "renamed.png")  # a loose image is in the file list too
    assert data.folder_listing(folder) != before


def test_data_image_size_is_checked_against_the_sizes_used(tmp_path):
    write_images(tmp_path / "images")
    config = copy.deepcopy(TINY_CONFIG)
    config.update(dataset="imagefolder", data_dir="images", data_image_size=24)
    config["split"] = {"calibration": 2, "test": 2, "seed": 0, "validation": 2}
    error = parse_time_error(config, tmp_path)
    assert error and "data_image_size: 24 is below the largest size the study uses (32" in error, error


def test_adding_an_image_rebuilds_the_dataset(tmp_path):
    config = copy.deepcopy(TINY_CONFIG)
    config.update(dataset="imagefolder", data_dir="images", data_image_size=32)
    config["split"] = {"calibration": 2, "test": 2, "seed": 0, "validation": 2}
    work = copy_workflow(tmp_path / "study", config)
    write_images(work / "images")
    target = f"results/{grid.results_name({**config, 'data_dir': str(work / 'images')})}/data.npz"
    snakemake(work, target)
    assert planned_jobs(work, target) == {}
    time.sleep(0.01)
    write_images(work / "extra", classes=("dog",), per_class=1)
    (work / "extra" / "dog" / "0.png").rename(work / "images" / "dog" / "added.png")
    assert planned_jobs(work, target).get("prepare_data") == 1


def test_two_image_folders_never_share_results(tmp_path):
    one = {"dataset": "imagefolder", "data_dir": str(tmp_path / "a" / "photos"), "model": {"name": "resnet18"}}
    two = {**one, "data_dir": str(tmp_path / "b" / "photos")}
    assert grid.results_name(one) != grid.results_name(two)
    assert grid.results_name(one).startswith("imagefolder-photos-")
    assert grid.report_dir(one) != grid.report_dir(two)
    assert grid.results_name({"dataset": "digits", "data_dir": "data"}) == "digits"
