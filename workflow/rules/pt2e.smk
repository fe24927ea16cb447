# PyTorch's own x86 INT8 program for the torch_pt2e backend: the checkpoint's model quantised with PT2E
# (torchao's X86InductorQuantizer), calibrated on the calibration split, saved as an ExportedProgram with a
# dynamic batch (pt2e/int8.pt2, and a .json saying how it was made). Where torchao is missing, the .pt2 is a
# stub naming the install command and the cells report 'unavailable'; torchao's version in the params
# reruns the rule once it is installed.

from infbench.backends.registry import PT2E_PATH


rule quantize_pt2e:
    input:
        checkpoint=CHECKPOINT,
        dataset=DATASET,
    output:
        program=f"{STUDY}/{PT2E_PATH}",
        info=f"{STUDY}/{PT2E_PATH.removesuffix('.pt2')}.json",
    log:
        f"{STUDY}/logs/quantize/pt2e_int8.log",
    priority: BUILD_PRIORITY
    conda:
        CORE_ENV
    # Calibration runs the model: every core, nothing measured beside it.
    threads: all_cores
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        image_size=lambda wc: model_config(wc)["train"]["image_size"],
        samples=config["quantize"]["calibration_samples"],
        code=grid.stage_code_hash("backends.torch_pt2e"),
        versions=grid.package_versions("torch", "torchvision", "torchao"),
    shell:
        "infbench quantize-pt2e --checkpoint {input.checkpoint:q} --dataset {input.dataset:q} --out {output.program:q}"
        " --image-size {params.image_size} --samples {params.samples} --threads {threads} > {log} 2>&1"
