"""Weakly supervised instance segmentation: SAM masks from pseudo boxes (METHOD.md 11)."""
