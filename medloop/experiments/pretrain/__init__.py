"""Self-supervised pre-training jobs (`task: pretrain`), see docs/pretrain.md."""
