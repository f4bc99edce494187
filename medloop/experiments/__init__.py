"""What runs INSIDE a sandbox: the job contract, dataset I/O, trainers and inference.

Only `medloop.experiments.dataset` (torch-free) is imported by the host as well.
"""
