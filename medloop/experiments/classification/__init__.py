"""Volume-level classification jobs: a shared 3D encoder per modality, adapters (linear
probe, full fine-tuning, conv adapters, LoRA, HyDA) and the trainer."""
