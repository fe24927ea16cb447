"""What is measured: timing statistics, memory, and the machine's fingerprint."""
