"""infbench: which way of running an image classifier is fastest here, and what it costs.

snakemake --cores all report        # the whole study on config/config.yaml
snakemake -n report               # the plan: cells per device and backend, what is done, the time left
snakemake -p --cores all report     # the same run with Snakemake's full output (every job and command)

The workflow lives in workflow/Snakefile (where the Snakemake workflow catalog and `module` look for it).
"""


include: "workflow/Snakefile"


# An included file's default target does not carry over to the including one: name it here.
workflow.default_target = "all"
