"""Reproducible training of the embedded demo: corpus -> tokenizer -> Qwen3.5 LM -> per-layer TopK SAEs -> labels.

Run everything with ``python -m training.build_demo`` (see DEMO_MODEL.md).
"""
