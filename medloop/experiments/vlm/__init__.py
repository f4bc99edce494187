"""Vision-language models inside the sandbox: the VQA item format (VLMEvalKit TSV), the
benchmark runner and its model backends, dataset-to-VQA conversion and VLM fine-tuning.

Only the standard library and numpy at import time; torch, transformers, peft and PIL are
imported by the functions that need them.
"""
