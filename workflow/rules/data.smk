from infbench.stages.data import folder_listing


rule prepare_data:
    output:
        DATASET,
    log:
        f"results/{RESULTS}/logs/prepare_data.log",
    priority: BUILD_PRIORITY
    conda:
        CORE_ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        dataset=config["dataset"],
        data_dir=config["data_dir"],
        split=config["split"],
        md5=config["cifar10_md5"],
        # the stored side of an image folder's images (the other datasets have theirs)
        image_size=(
            f"--image-size {config['data_image_size']}"
            if config["dataset"] == "imagefolder"
            else ""
        ),
        # an image folder's file list (names, sizes, mtimes): a changed image rebuilds the dataset
        listing=(
            folder_listing(config["data_dir"])
            if config["dataset"] == "imagefolder"
            else ""
        ),
        code=grid.stage_code_hash("stages.data"),
    shell:
        "infbench prepare-data --dataset {params.dataset:q} --data-dir {params.data_dir:q} --out {output:q}"
        " --calib {params.split[calibration]:q} --test {params.split[test]:q} --seed {params.split[seed]:q}"
        " --validation {params.split[validation]:q}"
        " --cifar-md5 {params.md5} {params.image_size} > {log} 2>&1"
