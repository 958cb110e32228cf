"""Dataset readers, the manifest, COCO ground truth and the generated shapes dataset."""
