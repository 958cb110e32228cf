"""Retraining torchvision detectors on pseudo ground truth (METHOD.md sections 10-11)."""
