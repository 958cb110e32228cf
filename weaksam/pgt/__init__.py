"""Pseudo ground truth from WSOD detections (METHOD.md section 9)."""
