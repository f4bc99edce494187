"""Promptable 3D segmentation (SAM-style) inside the sandbox: model, training, interactive rounds."""
