"""infbench: which way of running an image classifier is fastest here, and what it costs.

snakemake --cores 1 report        # the whole study on config/config.yaml
snakemake -n report               # list the jobs without running them
"""

from pathlib import Path

from infbench.config import check_schema
from snakemake.utils import min_version, validate

min_version("8.20")


configfile: "config/config.yaml"


# Every problem of the config, one line each naming the key and what is allowed (Snakemake's own
# message dumps the whole schema); then Snakemake fills in the defaults.
check_schema(config, Path(workflow.basedir, "config/schema.yaml"))
validate(config, "config/schema.yaml", set_default=True)


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/export.smk"
include: "workflow/rules/quantize.smk"
include: "workflow/rules/compile.smk"
include: "workflow/rules/metrics.smk"
include: "workflow/rules/bench.smk"
include: "workflow/rules/accuracy.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        rules.report.output,
