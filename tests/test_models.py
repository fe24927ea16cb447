"""Any image classifier: the zoo (names, heads, sizes), the user's weights and checkpoints, the user's
image folder, and real Snakemake runs of other families than ResNet.

The runs use the tiny grid of conftest (one size, one batch, torch fp32 and ONNX Runtime fp32/int8)
so that each family costs about a minute on two cores. Each starts in a copy of the suite's default
study (conftest's `reported_workflow`), as a user's next study in the same folder would: the dataset
and the hardware probe are reused; the model is trained, exported and measured by the run itself.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_CONFIG, snakemake, write_config

from infbench.stages import data
from infbench.stages import model as zoo
from infbench.study import grid

# ------------------------------------------------------------------------------------------ the zoo


def test_unknown_names_get_the_closest_ones():
    with pytest.raises(zoo.ModelError, match="unknown model 'mobilenet_v3_larg'; closest: mobilenet_v3_large"):
        zoo.check_name("mobilenet_v3_larg")
    with pytest.raises(zoo.ModelError, match="timm has no model 'convnext_atoo'; closest: timm:convnext_atto"):
        zoo.check_name("timm:convnext_atoo")


def test_a_study_folder_never_holds_the_name_as_it_stands():
    assert zoo.slug("timm:vit_tiny_patch16_224.augreg_in21k") == "timm-vit_tiny_patch16_224.augreg_in21k"
    assert grid.study_dir("digits", "timm:convnext_atto") == "results/digits/timm-convnext_atto"
    assert "/" not in zoo.slug("../../etc") and ".." not in zoo.slug("../../etc")


@pytest.mark.parametrize(
    ("name", "head"),
    [
        ("resnet18", "fc"),
        ("mobilenet_v3_small", "classifier.3"),
        ("efficientnet_b0", "classifier.1"),
        ("convnext_tiny", "classifier.2"),
        ("vit_b_16", "heads.head"),
        ("squeezenet1_1", "classifier.1"),
        ("densenet121", "classifier"),
    ],
)
def test_the_head_is_found_and_replaced_in_every_family(name, head):
    with torch.device("meta"):
        model = zoo.build(name, 1000)
    assert zoo.head_of(model)[0] == head
    zoo.replace_head(model, 7)
    assert zoo.head_classes(model) == 7
    assert zoo.head_of(model)[0] == head


def test_timm_heads_use_reset_classifier():
    model = zoo.build("timm:convnext_atto", 1000)
    zoo.replace_head(model, 3)
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 3)


def test_input_sizes_are_probed_without_computing():
    assert zoo.accepted_size("resnet18", "imagenet", 32) is None
    assert "does not take 32×32" in zoo.accepted_size("alexnet", "imagenet", 32)
    # a ViT built for 32 px takes 32 px only
    assert zoo.accepted_size("vit_b_16", "imagenet", 32, 32) is None
    assert "does not take 64×64" in zoo.accepted_size("vit_b_16", "imagenet", 64, 32)
    assert zoo.fixed_size_family("vit_b_16") and not zoo.fixed_size_family("resnet18")


def test_small_image_stems():
    cifar = zoo.build("mobilenet_v3_small", 10, "cifar")
    first = next(m for m in cifar.features.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.stride == (1, 1)
    resnet = zoo.build("resnet18", 10, "cifar")
    assert resnet.conv1.kernel_size == (3, 3) and isinstance(resnet.maxpool, torch.nn.Identity)
    with pytest.raises(zoo.ModelError, match="has no small-image stem adaptation"):
        zoo.build("convnext_tiny", 10, "cifar")


def test_normalisation_is_the_models_own():
    assert zoo.normalisation("resnet18", None) == (zoo.IMAGENET_MEAN, zoo.IMAGENET_STD)
    mean, std = zoo.normalisation("timm:vit_tiny_patch16_224", None)
    assert mean == (0.5, 0.5, 0.5) and std == (0.5, 0.5, 0.5)


# ------------------------------------------------------------------------------ weights, checkpoints


def test_named_weights_come_from_the_hub_cache_or_one_line_says_where(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(zoo.ModelError) as missing:
        zoo.cached_weights_file("resnet18", "IMAGENET1K_V1")
    target = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert str(target) in str(missing.value) and "https://download.pytorch.org" in str(missing.value)
    assert "\n" not in str(missing.value)
    # the real format in the real place: the model starts from it, its 1000-class head replaced by 10
    torch.manual_seed(1)
    pretrained = zoo.build("resnet18", 1000)
    target.parent.mkdir(parents=True)
    torch.save(pretrained.state_dict(), target)
    net, origin, replaced = zoo.initial(zoo.Facts("resnet18", 10), "IMAGENET1K_V1", None, False)
    assert replaced and zoo.head_classes(net) == 10 and str(target) in origin
    assert torch.equal(net.conv1.weight, pretrained.conv1.weight)


def test_a_pickled_module_needs_trust(tmp_path):
    path = tmp_path / "whole.pt"
    torch.save(zoo.build("resnet18", 10), path)
    with pytest.raises(zoo.ModelError, match="set model.trust_checkpoint: true"):
        zoo.read_state_dict(path)
    assert "fc.weight" in zoo.read_state_dict(path, trust=True)


def test_a_checkpoint_that_does_not_fit_names_the_keys(tmp_path):
    path = tmp_path / "other.pt"
    torch.save(zoo.build("resnet34", 10).state_dict(), path)
    model = zoo.build("resnet18", 10)
    with pytest.raises(zoo.ModelError, match=r"unexpected keys layer1\.2\.bn1"):
        zoo.fit_state_dict(model, zoo.read_state_dict(path), f"model.checkpoint {path}")


# ---------------------------------------------------------------------------------- the user's images


def write_image_folder(root: Path, classes=("cat", "dog", "fox"), per_class: int = 40) -> Path:
    """A real image folder: PNG and JPEG files of different sizes, one subfolder per class, each
    class a colour so that a model can learn it."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            w, h = int(rng.integers(40, 90)), int(rng.integers(40, 90))
            pixels = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
            pixels[..., c % 3] += 180
            suffix = ".png" if i % 2 else ".jpg"
            Image.fromarray(pixels).save(root / name / f"{i}{suffix}")
    return root


def test_an_image_folder_becomes_a_dataset(tmp_path):
    folder = write_image_folder(tmp_path / "images")
    out = tmp_path / "data.npz"
    data.prepare("imagefolder", folder, out, calib=20, test=30, seed=0, image_size=48)
    x, y = data.load_split(out, "train")
    assert x.shape == (120 - 50, 48, 48, 3) and set(y) == {0, 1, 2}
    assert data.class_names(out) == ["cat", "dog", "fox"]


def test_bad_image_folders_are_named(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="has 0 class subfolder"):
        data.read_image_folder(tmp_path / "empty", 32)
    one = write_image_folder(tmp_path / "one", classes=("only",), per_class=3)
    with pytest.raises(ValueError, match="has 1 class subfolder"):
        data.read_image_folder(one, 32)
    broken = write_image_folder(tmp_path / "broken", per_class=2)
    (broken / "dog" / "bad.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match=r"cannot read image .*bad\.jpg"):
        data.read_image_folder(broken, 32)


# --------------------------------------------------------------------------------------- real runs


def tiny(**changes) -> dict:
    config = copy.deepcopy(TINY_CONFIG)
    config["grid"]["backends"] = {"torch": ["fp32"], "onnxruntime": ["fp32", "int8"]}
    config["accuracy"] = {"expected_tensorrt": []}
    for key, value in changes.items():
        config[key] = {**config.get(key, {}), **value} if isinstance(value, dict) else value
    return config


def run_study(workdir: Path, config: dict) -> tuple[Path, dict, dict]:
    """A real `snakemake report` of `config` in `workdir`: (the study's folder, its report's meta, its
    train_metrics.json)."""
    write_config(workdir, config)
    snakemake(workdir, "report")
    return read_study(workdir, grid.results_name(config), config["model"]["name"])


def read_study(workdir: Path, dataset: str, name: str) -> tuple[Path, dict, dict]:
    study = workdir / grid.study_dir(dataset, name)
    meta = json.loads((study / "report" / "meta.json").read_text())
    return study, meta, json.loads((study / "train_metrics.json").read_text())


@pytest.fixture(scope="module")
def family_study(reported_workflow, tmp_path_factory):
    """name → a folder in which a real `snakemake report` of that one model ran, in a copy of the default
    study; each model's run once per module (the several-models study builds on MobileNet's)."""
    done: dict[str, Path] = {}

    def study(name: str) -> Path:
        if name not in done:
            workdir = tmp_path_factory.mktemp("family") / "wf"
            shutil.copytree(reported_workflow, workdir, symlinks=True)
            run_study(workdir, tiny(model={"name": name}))
            done[name] = workdir
        return done[name]

    return study


def cell_statuses(study: Path) -> dict[str, str]:
    return {
        str(p.relative_to(study / "bench")): json.loads(p.read_text())["status"]
        for p in (study / "bench").rglob("*.json")
    }


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("mobilenet_v3_small", "depthwise convolutions, squeeze-excitation, Hardswish"),
        ("timm:convnext_atto", "LayerNorm, depthwise 7×7, a timm model"),
    ],
)
def test_a_family_runs_the_grid(family_study, name, why):
    study, meta, trained = read_study(family_study(name), "digits", name)
    statuses = cell_statuses(study)
    assert len(statuses) == 3 and all(s in ("ok", "unstable") for s in statuses.values()), statuses
    accuracy = {(a["backend"], a["precision"]): a for a in meta["accuracy"]}
    assert accuracy[("onnxruntime", "int8")]["status"] == "ok"
    assert trained["model"] == name and trained["origin"] == "from scratch"
    assert zoo.read_facts(study / "checkpoint.pt").name == name


def test_a_fixed_size_model_drops_its_other_sizes(reported_copy):
    config = tiny(model={"name": "timm:vit_tiny_patch16_224"})
    config["grid"]["image_sizes"] = [32, 64]
    study, meta, _ = run_study(reported_copy, config)
    assert {p.split("/")[-1] for p in cell_statuses(study)} == {"32x4.json"}
    assert any("does not take 64×64" in d["reason"] for d in meta["dropped"])
    assert zoo.read_facts(study / "checkpoint.pt").mean == (0.5, 0.5, 0.5)


def test_a_users_checkpoint_on_their_own_images_evaluated_only(reported_copy, tmp_path):
    """A user's state_dict (1000 classes, as from ImageNet) with `train.epochs: 0` on an image folder of
    three classes: nothing is trained, the head is replaced, and the report says its accuracy compares
    nothing while the cells still run."""
    folder = write_image_folder(tmp_path / "images")
    torch.manual_seed(0)
    torch.save(zoo.build("resnet18", 1000).state_dict(), tmp_path / "mine.pt")
    config = tiny(
        dataset="imagefolder",
        data_dir=str(folder),
        data_image_size=48,
        model={"name": "resnet18", "checkpoint": str(tmp_path / "mine.pt")},
        split={"calibration": 20, "test": 30, "seed": 0, "validation": 10},
        train={"epochs": 0},
    )
    study, meta, trained = run_study(reported_copy, config)
    assert trained["trained_epochs"] == 0 and trained["head_replaced"] and trained["epochs"] == []
    assert trained["classes"] == ["cat", "dog", "fox"]
    log = (study / "logs" / "train.log").read_text()
    assert "evaluate only, no training, classifier head replaced" in log
    assert any("accuracy figures compare nothing" in w for w in meta["model_warnings"])
    summary = (study / "report" / "summary.md").read_text()
    assert "accuracy figures compare nothing" in summary
    assert all(s in ("ok", "unstable") for s in cell_statuses(study).values())


# ------------------------------------------------------------------------------------ several models


def test_several_models_in_one_study(family_study, tmp_path):
    """Two models in one study: one report with both models' cells, accuracy keyed by model, the Pareto
    front per shape and the cross-model finding; a third model added later plans only its own jobs and
    the report. (In a copy of MobileNet's family study, itself in a copy of the default study: both
    models' training, export and fp32 cells are up to date there; ResNet-18's INT8 is built here.)"""
    from conftest import planned_jobs

    config = tiny(models=["resnet18", "mobilenet_v3_small"])
    workdir = tmp_path / "wf"
    shutil.copytree(family_study("mobilenet_v3_small"), workdir, symlinks=True)
    write_config(workdir, config)
    snakemake(workdir, "report")
    report = workdir / "results" / "digits" / "models" / "report"
    meta = json.loads((report / "meta.json").read_text())
    import polars as pl

    summary = pl.read_parquet(report / "summary.parquet")
    assert sorted(summary.get_column("model").unique()) == ["mobilenet_v3_small", "resnet18"]
    assert summary.height == 6
    # each model's accuracy on its own cells, never the other's
    for model in ("resnet18", "mobilenet_v3_small"):
        own = {
            (a["backend"], a["precision"]): a["accuracy_top1"]
            for a in meta["accuracy"]
            if a["model"] == model and a["device"] == "cpu"
        }
        rows = summary.filter(pl.col("model") == model).to_dicts()
        assert all(r["accuracy_top1"] == own[(r["backend"], r["precision"])] for r in rows)
    # each model keeps its own study folder
    for model in ("resnet18", "mobilenet_v3_small"):
        assert (workdir / "results" / "digits" / model / "checkpoint.pt").is_file()
    # the Pareto front: no cell off it beats a cell on it on both axes; no cell on it is beaten
    from infbench.report.charts import pareto_by_shape

    points = pareto_by_shape(summary).to_dicts()
    on = [p for p in points if p["pareto"]]
    assert on
    for p in points:
        beaten = any(
            q["throughput_img_s"] >= p["throughput_img_s"]
            and q["accuracy_pct"] >= p["accuracy_pct"]
            and (q["throughput_img_s"], q["accuracy_pct"]) != (p["throughput_img_s"], p["accuracy_pct"])
            for q in points
        )
        assert beaten != p["pareto"], p
    html = (report / "index.html").read_text()
    assert "Accuracy vs throughput across models" in html
    md = (report / "summary.md").read_text()
    assert "Across models, the most accurate variant is" in md or all(p["status"] != "ok" for p in points)
    # in a real browser, like the default report: every chart drawn, the cross-model one with marks
    from test_report_browser import CHROMIUM, check_report

    if Path(CHROMIUM).exists():
        state = check_report(report / "index.html", tmp_path / "models.png")
        assert state["problems"] == [] and state["failed"] == 0, state
        assert state["rendered"] == len(state["charts"])
        across = next(c for c in state["charts"] if c["id"] == "vis-models_accuracy_vs_throughput")
        assert across["svg"] >= 1 and across["marks"] > 0, across
    # a third model: only its jobs and the report
    write_config(workdir, tiny(models=["resnet18", "mobilenet_v3_small", "timm:convnext_atto"]))
    jobs = planned_jobs(workdir, "report")
    assert jobs.get("train") == 1 and jobs.get("bench_cell") == 3 and jobs.get("accuracy") == 3, jobs
    assert "prepare_data" not in jobs and "probe" not in jobs, jobs
