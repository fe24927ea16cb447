"""A model from outside PyTorch's zoos: the user's ONNX file, or a Hugging Face image classifier saved
in a local folder (issue 38).

The ONNX files are exported here from torchvision models (random weights); the Hugging Face models are
made with `from_config` and `save_pretrained` (no network). Each bad form is one line naming the fix;
the real Snakemake runs measure every cell the file can run and drop the others with their reason.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_CONFIG, copy_workflow, planned_jobs, snakemake
from test_bad_config import parse_time_error
from test_models import write_image_folder

from infbench.stages import model as zoo
from infbench.stages import model_onnx
from infbench.study import grid
from infbench.study.config import model_problems

IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


def export(module, path: Path, shape, dynamic_batch: bool = True, names=("x",), inputs=None) -> Path:
    """`module` → an ONNX file at `path` (legacy exporter: the form most users' files have)."""
    module.eval()
    inputs = inputs or (torch.zeros(*shape),)
    axes = {names[0]: {0: "n"}, "y": {0: "n"}} if dynamic_batch else None
    torch.onnx.export(
        module, inputs, str(path), input_names=list(names), output_names=["y"], dynamic_axes=axes, dynamo=False
    )
    return path


class NHWC(torch.nn.Module):
    """A model whose input is NHWC, as Keras and TFLite exports have it."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x.permute(0, 3, 1, 2))


def resnet(classes: int):
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=classes)


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text, text
    return text


def onnx_config(path: Path, dataset="digits", **model) -> dict:
    config = copy.deepcopy(TINY_CONFIG)
    config["model"] = {**grid.MODEL_DEFAULTS, "name": "resnet18", "onnx": str(path), **IMAGENET, **model}
    config.update(dataset=dataset, data_dir="data", accuracy={"expected_tensorrt": []})
    return config


# ------------------------------------------------------------------------------------- bad forms


def test_two_inputs_are_refused(tmp_path):
    class Two(torch.nn.Module):
        def forward(self, a, b):
            return a.mean((2, 3)) + b.mean((2, 3))

    path = export(Two(), tmp_path / "two.onnx", None, names=("a", "b"), inputs=(torch.zeros(1, 3, 8, 8),) * 2)
    with pytest.raises(zoo.ModelError) as exc:
        model_onnx.image_input(path)
    assert "has 2 inputs (a, b)" in one_line(exc) and "export it with one" in str(exc.value)


def test_a_text_model_is_refused(tmp_path):
    class Text(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(100, 8)
            self.fc = torch.nn.Linear(8, 2)

        def forward(self, ids):
            return self.fc(self.emb(ids).mean(1))

    path = export(Text(), tmp_path / "text.onnx", None, names=("input_ids",), inputs=(torch.zeros(1, 7).long(),))
    with pytest.raises(zoo.ModelError) as exc:
        model_onnx.image_input(path)
    assert "'input_ids' is int64 of rank 2, not an image batch" in one_line(exc)


def test_a_class_count_that_does_not_match_the_dataset(tmp_path):
    path = export(resnet(3), tmp_path / "three.onnx", (1, 3, 32, 32))
    problems = model_problems(onnx_config(path), tmp_path)
    assert len(problems) == 1 and "\n" not in problems[0]
    assert "outputs 3 classes, the dataset (digits) has 10" in problems[0] and "10-class head" in problems[0]


def test_external_data_outside_the_models_folder(tmp_path):
    import onnx

    src = export(resnet(10), tmp_path / "plain.onnx", (1, 3, 32, 32))
    model = onnx.load(str(src))
    (tmp_path / "model").mkdir()
    # onnx.save refuses a location outside the folder; a hand-edited or other tool's file may have one
    onnx.save(model, str(tmp_path / "model" / "m.onnx"), save_as_external_data=True, location="weights.bin")
    (tmp_path / "model" / "weights.bin").rename(tmp_path / "weights.bin")
    moved = onnx.load(str(tmp_path / "model" / "m.onnx"), load_external_data=False)
    for tensor in moved.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "../weights.bin"
    onnx.save(moved, str(tmp_path / "model" / "m.onnx"))
    with pytest.raises(zoo.ModelError) as exc:
        model_onnx.image_input(tmp_path / "model" / "m.onnx")
    assert "outside the model's folder" in one_line(exc) and "move that file into the folder" in str(exc.value)
    # inside the folder it is read, and hashed with the graph
    model = onnx.load(str(src))  # the first save moved its weights out of the proto
    onnx.save(model, str(tmp_path / "model" / "ok.onnx"), save_as_external_data=True, location="ok.bin")
    assert model_onnx.image_input(tmp_path / "model" / "ok.onnx").classes == 10
    before = model_onnx.content_hash(tmp_path / "model" / "ok.onnx")
    with open(tmp_path / "model" / "ok.bin", "r+b") as f:
        f.write(b"\x01\x02\x03\x04")
    assert model_onnx.content_hash(tmp_path / "model" / "ok.onnx") != before


def test_a_layout_the_graph_cannot_tell_and_no_normalisation(tmp_path):
    class Square(torch.nn.Module):  # 3 in both places: NCHW or NHWC?
        def forward(self, x):
            return x.mean((2, 3))

    path = export(Square(), tmp_path / "square.onnx", (1, 3, 3, 3), dynamic_batch=False)
    with pytest.raises(zoo.ModelError) as exc:
        model_onnx.image_input(path)
    assert "set model.layout: NCHW or NHWC" in one_line(exc)
    assert model_onnx.image_input(path, "NHWC").layout == "NHWC"
    with pytest.raises(zoo.ModelError) as exc:
        model_onnx.normalisation({"onnx": "m.onnx"})
    assert "model.mean and model.std" in one_line(exc) and "preprocessing: in_graph" in str(exc.value)
    assert model_onnx.normalisation({"onnx": "m.onnx", "preprocessing": "in_graph"}) == ((0.0,) * 3, (1.0,) * 3)


def test_a_hugging_face_folder_without_config_json(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(zoo.ModelError) as exc:
        zoo.check_name(f"hf:{tmp_path / 'empty'}")
    assert "has no config.json" in one_line(exc) and "save_pretrained" in str(exc.value)


def test_a_hugging_face_folder_that_is_no_image_classifier_and_a_size_it_refuses(tmp_path):
    transformers = pytest.importorskip("transformers")
    bert = transformers.BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
    )
    transformers.BertForSequenceClassification(bert).save_pretrained(tmp_path / "bert")
    with pytest.raises(zoo.ModelError) as exc:
        zoo.check_name(f"hf:{tmp_path / 'bert'}")
    assert "is a bert model (BertForSequenceClassification), not an image classifier" in one_line(exc)
    vit = f"hf:{save_hf_vit(tmp_path / 'vit')}"
    config = copy.deepcopy(TINY_CONFIG)
    config["model"] = {**grid.MODEL_DEFAULTS, "name": vit}
    config["train"]["image_size"] = 48
    problems = model_problems(config, tmp_path)
    assert any("train.image_size" in p and "(its image processor's: 32)" in p for p in problems), problems
    assert zoo.normalisation(vit, None) == ((0.5,) * 3, (0.5,) * 3)


def test_an_onnx_file_a_hugging_face_folder_and_a_torchvision_model_in_one_study(tmp_path):
    path = export(resnet(10), tmp_path / "mine.onnx", (2, 3, 32, 32))
    vit = save_hf_vit(tmp_path / "vit")
    config = copy.deepcopy(TINY_CONFIG)
    config["models"] = ["resnet18", {"onnx": str(path), **IMAGENET}, {"name": f"hf:{vit}"}]
    workdir = copy_workflow(tmp_path / "wf", config)
    jobs = planned_jobs(workdir, "report")
    assert jobs["import_onnx"] == 1 and jobs["train"] == 2 and jobs["export_onnx"] == 2, jobs
    # two PyTorch models' torch cells, and the ONNX file's ONNX Runtime one
    assert jobs["bench_cell"] == 5, jobs


# ------------------------------------------------------------------------------- what the file decides


def test_a_fixed_batch_nhwc_file_keeps_the_cells_it_can_run(tmp_path):
    path = export(NHWC(resnet(10)), tmp_path / "nhwc1.onnx", (1, 32, 32, 3), dynamic_batch=False)
    config = onnx_config(path)
    config["grid"].update(image_sizes=[32, 64], batch_sizes=[1, 4])
    config["grid"]["backends"] = {"torch": ["fp32"], "onnxruntime": ["fp32", "int8"], "openvino": ["fp32"]}
    assert model_problems(grid.model_configs(config)[next(iter(grid.model_configs(config)))], tmp_path) == []
    cells, dropped = grid.expand(config)
    kept = {(c.backend, c.precision, c.image_size, c.batch_size) for c in cells}
    # ONNX Runtime runs the file's batch; OpenVINO reshapes it (and says so in the cell); 64×64 nowhere
    assert kept == {("onnxruntime", "fp32", 32, 1), ("onnxruntime", "int8", 32, 1), ("openvino", "fp32", 32, 1)} | {
        ("openvino", "fp32", 32, 4)
    }
    reasons = " | ".join(d.reason for d in dropped)
    assert "no PyTorch source" in reasons and "fixed at 32×32" in reasons and "batch is fixed at 1" in reasons
    study = grid.model_configs(config)
    (name,) = study
    assert name.startswith("onnx-nhwc1-") and len(name) == len("onnx-nhwc1-") + 8


def test_the_wrapped_file_computes_what_the_users_file_does(tmp_path):
    import onnxruntime as ort

    from infbench.stages import data

    path = export(NHWC(resnet(10)), tmp_path / "nhwc1.onnx", (1, 32, 32, 3), dynamic_batch=False)
    dataset = tmp_path / "data.npz"
    data.prepare("digits", tmp_path, dataset, calib=16, test=16, seed=0)
    out, ckpt, metrics = tmp_path / "s" / "onnx" / "fp32.onnx", tmp_path / "s" / "checkpoint.pt", tmp_path / "m.json"
    norm = (tuple(IMAGENET["mean"]), tuple(IMAGENET["std"]))
    info = model_onnx.import_onnx(path, out, ckpt, metrics, dataset, *norm, None, 32)
    assert info["input"]["layout"] == "NHWC" and info["input"]["batch"] == 1
    x = data.to_input(data.load_split(dataset, "test")[0][:1], 32, norm)
    theirs = ort.InferenceSession(str(path)).run(None, {"x": x.transpose(0, 2, 3, 1)})[0]
    ours = zoo.logits(zoo.load_checkpoint(ckpt), x, 8)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    assert zoo.read_facts(ckpt).mean == norm[0]
    # the graph's count agrees with PyTorch's counter on the same network (convolutions and the head)
    from infbench.measure import flops

    expected = flops.count(resnet(10).eval(), 32)["gflops_per_image"]
    assert model_onnx.count(out, 32)["gflops_per_image"] == pytest.approx(expected, rel=0.01)


# ---------------------------------------------------------------------------------------- real runs


def run(tmp_path: Path, config: dict) -> tuple[Path, dict, float]:
    """A real `snakemake report` of `config` in a fresh copy of the workflow: (workdir, meta, seconds)."""
    workdir = copy_workflow(tmp_path / "wf", config)
    start = time.monotonic()
    snakemake(workdir, "report", timeout=1800)
    seconds = time.monotonic() - start
    meta = json.loads((workdir / grid.report_dir(config) / "meta.json").read_text())
    show_accuracy(meta)
    return workdir, meta, seconds


def show_accuracy(meta: dict) -> None:
    """The accuracy table in the test's output (pytest -s): what INT8 cost each model here."""
    for a in meta["accuracy"]:
        top1 = "-" if a["accuracy_top1"] is None else f"{a['accuracy_top1']:.3f}"
        print(f"  {a['model']:>24} {a['backend']:>12} {a['precision']:>13}: {a['status']} top-1 {top1}")


def statuses(workdir: Path) -> dict[str, str]:
    return {
        str(p.relative_to(workdir / "results")): json.loads(p.read_text())["status"]
        for p in (workdir / "results").glob("*/*/bench/**/*.json")
    }


def onnx_run_config(folder: Path, entries: list, batches: list, backends: dict) -> dict:
    config = copy.deepcopy(TINY_CONFIG)
    config.update(dataset="imagefolder", data_dir=str(folder), data_image_size=48, models=entries)
    config["split"] = {"calibration": 20, "test": 30, "validation": 10, "seed": 0}
    config["accuracy"] = {"expected_tensorrt": []}
    config["grid"].update(batch_sizes=batches, backends=backends)
    return config


def test_an_onnx_file_with_a_dynamic_batch_beside_a_torchvision_model(tmp_path):
    folder = write_image_folder(tmp_path / "images")
    path = export(resnet(3), tmp_path / "mine.onnx", (2, 3, 32, 32))
    backends = {"torch": ["fp32"], "onnxruntime": ["fp32", "int8", "int8_dynamic"], "openvino": ["fp32", "int8_nncf"]}
    entries = [{"onnx": str(path), **IMAGENET}, {"name": "resnet18", "train": {"epochs": 1}}]
    workdir, meta, seconds = run(tmp_path, onnx_run_config(folder, entries, [4], backends))
    print(f"\nONNX file, dynamic batch, with resnet18: snakemake report took {seconds:.0f} s (under load)")
    cells = statuses(workdir)
    name = next(m for m in meta["models"] if m.startswith("onnx-mine-"))
    ours = {k: v for k, v in cells.items() if k.split("/")[1] == name}
    assert len(ours) == 5 and all(s in ("ok", "unstable") for s in ours.values()), ours
    assert any(k.split("/")[1] == "resnet18" and "/bench/torch/" in k for k in cells)  # one study, both models
    # the reasons name the model as the report does (its folder is its name's safe form)
    assert any(f"onnx:{name[5:]}: an ONNX file has no PyTorch source" in d["reason"] for d in meta["dropped"])
    accuracy = {(a["model"], a["backend"], a["precision"]): a for a in meta["accuracy"]}
    for backend, precision in [("onnxruntime", "int8"), ("onnxruntime", "int8_dynamic"), ("openvino", "int8_nncf")]:
        assert accuracy[(name, backend, precision)]["status"] == "ok"
        assert accuracy[(name, backend, precision)]["accuracy_top1"] is not None


def test_an_onnx_file_with_a_fixed_batch_of_one_and_nhwc_input(tmp_path):
    folder = write_image_folder(tmp_path / "images")
    path = export(NHWC(resnet(3)), tmp_path / "mine.onnx", (1, 32, 32, 3), dynamic_batch=False)
    backends = {"torch": ["fp32"], "onnxruntime": ["fp32", "int8"], "openvino": ["fp32", "int8"]}
    config = onnx_run_config(folder, [{"onnx": str(path), **IMAGENET}], [1, 4], backends)
    config["grid"]["image_sizes"] = [32, 64]
    config["data_image_size"] = 64  # the folder's images must cover the largest grid size (issue 35 item 6)
    workdir, meta, seconds = run(tmp_path, config)
    print(f"\nONNX file, batch 1, NHWC: snakemake report took {seconds:.0f} s (under load)")
    cells = statuses(workdir)
    assert all(s in ("ok", "unstable") for s in cells.values()), cells
    assert {k.split("/bench/")[1] for k in cells} == {
        "onnxruntime/fp32/cpu/32x1.json",
        "onnxruntime/int8/cpu/32x1.json",
        "openvino/fp32/cpu/32x1.json",
        "openvino/fp32/cpu/32x4.json",
        "openvino/int8/cpu/32x1.json",
        "openvino/int8/cpu/32x4.json",
    }
    reasons = " | ".join(d["reason"] for d in meta["dropped"])
    assert "batch is fixed at 1: batch 4 not measured on onnxruntime" in reasons
    assert "fixed at 32×32" in reasons and "no PyTorch source" in reasons
    reshaped = json.loads(
        next((workdir / "results").glob("*/onnx-mine-*/bench/openvino/fp32/cpu/32x4.json")).read_text()
    )
    assert all(r["reshaped_from"] == [1, 3, 32, 32] for r in reshaped["repetition_runs"])
    accuracy = {(a["backend"], a["precision"]): a for a in meta["accuracy"]}
    assert accuracy[("onnxruntime", "int8")]["status"] == "ok"
    assert accuracy[("openvino", "int8")]["accuracy_top1"] is not None


def save_hf_vit(folder: Path, classes: int = 5) -> Path:
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(0)
    # a ViT small enough to train for two epochs on two cores: 32×32 images in 16 patches of 8×8
    config = ViTConfig(image_size=32, patch_size=8, hidden_size=48, num_hidden_layers=2, num_labels=classes)
    config.num_attention_heads, config.intermediate_size = 3, 96
    ViTForImageClassification(config).save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.5] * 3, image_std=[0.5] * 3).save_pretrained(
        folder
    )
    return folder


def test_a_hugging_face_vit_trained_on_digits(tmp_path):
    pytest.importorskip("transformers")
    folder = save_hf_vit(tmp_path / "vit")
    config = copy.deepcopy(TINY_CONFIG)
    config["model"] = {"name": f"hf:{folder}"}
    config["train"].update(epochs=2, optimizer="adamw", lr=0.003)
    config["accuracy"] = {"expected_tensorrt": []}
    config["grid"].update(image_sizes=[32, 64])
    config["grid"]["backends"] = {"torch": ["fp32"], "onnxruntime": ["fp32", "int8"], "openvino": ["fp32"]}
    workdir, meta, seconds = run(tmp_path, config)
    print(f"\nHF ViT: snakemake report took {seconds:.0f} s (under load)")
    study = workdir / grid.study_dir("digits", f"hf:{folder}")
    trained = json.loads((study / "train_metrics.json").read_text())
    assert trained["head_replaced"] and trained["origin"].startswith("from ")  # 5 labels → 10 digits
    facts = zoo.read_facts(study / "checkpoint.pt")
    assert facts.mean == (0.5, 0.5, 0.5) and facts.num_classes == 10
    cells = statuses(workdir)
    assert len(cells) == 4 and all(s in ("ok", "unstable") for s in cells.values()), cells
    assert any("does not take 64×64" in d["reason"] for d in meta["dropped"])
    accuracy = {(a["backend"], a["precision"]): a for a in meta["accuracy"]}
    assert accuracy[("onnxruntime", "int8")]["status"] == "ok"
    assert accuracy[("torch", "fp32")]["accuracy_top1"] > 0.2  # learnt something in 2 epochs (chance: 0.1)


def unlabelled_folder(root: Path) -> Path:
    """A folder of images without class subfolders (the images of write_image_folder, moved up)."""
    write_image_folder(root / "sorted")
    for i, f in enumerate(sorted((root / "sorted").rglob("*.*"))):
        f.rename(root / f"{i}{f.suffix}")
    for d in sorted((root / "sorted").iterdir()):
        d.rmdir()
    (root / "sorted").rmdir()
    return root


def test_unlabelled_images_serve_only_a_model_not_trained_here(tmp_path):
    folder = unlabelled_folder(tmp_path / "images")
    config = onnx_run_config(folder, [{"name": "resnet18"}], [1], {"torch": ["fp32"]})
    error = parse_time_error(config, tmp_path)
    assert error and "holds images without class subfolders (unlabelled)" in error
    assert "not resnet18, which is trained here" in error and "subfolder of its own" in error


def test_unlabelled_images_score_each_variant_by_its_agreement_with_the_file(tmp_path):
    folder = unlabelled_folder(tmp_path / "images")
    path = export(resnet(7), tmp_path / "mine.onnx", (2, 3, 32, 32))  # 7 classes: no dataset to check them against
    backends = {"onnxruntime": ["fp32", "int8"], "openvino": ["fp32", "int8_nncf_ac"]}
    config = onnx_run_config(folder, [{"onnx": str(path), **IMAGENET}], [4], backends)
    workdir, meta, seconds = run(tmp_path, config)
    print(f"\nONNX file on unlabelled images: snakemake report took {seconds:.0f} s")
    accuracy = {(a["backend"], a["precision"]): a for a in meta["accuracy"]}
    assert set(accuracy) == {(b, p) for b, ps in backends.items() for p in ps}
    for a in accuracy.values():
        assert a["status"] == "ok" and a["labels"] == "fp32 agreement (no labelled images)", a
        assert a["reference_top1"] == 1.0 and a["accuracy_top1"] == pytest.approx(a["top1_agreement"])
    assert accuracy[("onnxruntime", "fp32")]["accuracy_top1"] == 1.0
    nncf = json.loads(next((workdir / "results").glob("*/onnx-mine-*/openvino/int8_nncf_ac.json")).read_text())
    assert nncf["labels"] == "fp32 agreement (no labelled images)" and nncf["validation_top1_fp32"] == 1.0
    page = (workdir / grid.report_dir(config) / "index.html").read_text()
    assert "the images have no labels, so top-1 is the agreement with the fp32 model" in page
    assert "no labelled images: accuracy is the agreement with this fp32 model" in page
