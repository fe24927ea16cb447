"""infbench: which way of running an image classifier is fastest here, and what it costs.

snakemake --cores 1 report        # the whole study on config/config.yaml
snakemake -n report               # list the jobs without running them
"""

import sys
from pathlib import Path

from infbench.config import ConfigError, check_schema, overlay_backends, read_yaml
from snakemake.utils import min_version, validate

min_version("8.20")

# A YAML syntax error is one line naming the file and the line (Snakemake's names neither).
try:
    if Path("config/config.yaml").exists():
        read_yaml("config/config.yaml")
except ConfigError as exc:
    sys.exit(f"infbench: {exc}")


configfile: "config/config.yaml"


# An overlay (--configfile config/config.yaml mine.yaml, or --config) that gives grid.backends
# gives the whole map for the run: Snakemake would merge it into the default one instead.
backends = overlay_backends(
    workflow.config_settings.configfiles, workflow.config_settings.config
)
if backends is not None:
    config["grid"]["backends"] = backends


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


# The target: the report and every file it is made of (see PLANNED in workflow/rules/report.smk).
rule report:
    input:
        PLANNED,
        rules.aggregate.output,
        rules.render_report.output,


rule all:
    default_target: True
    input:
        rules.report.input,
