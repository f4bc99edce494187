"""What runs OUTSIDE the sandbox on a job's outputs: metrics recomputed from raw
predictions against held-out labels, and the statistics that turn them into verdicts."""
