"""Sandboxes that run jobs (local process, Docker, Ray) and the scheduler over them."""
