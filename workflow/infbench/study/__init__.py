"""A study: the config, its cells (paths, code hashes) and devices."""
