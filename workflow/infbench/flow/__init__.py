"""A run's machinery: the plan it prints, the progress lines while it runs (the snakemake logger plugin)."""
