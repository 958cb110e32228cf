"""Backbones (EfficientNet-Lite0, VGG16, ResNet-50) and the CAM classifier."""
