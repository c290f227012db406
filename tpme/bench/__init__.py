"""The harness: cells in isolated processes, probes, training loop, result records."""
