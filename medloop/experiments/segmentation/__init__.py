"""The MONAI segmentation trainer behind the job contract (imports torch and MONAI)."""
