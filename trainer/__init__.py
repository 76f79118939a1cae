"""Sortline trainer: labelled photos -> a fine-tuned Keras backbone (EfficientNet-Lite or VGG16) -> int8 TFLite
model bundle for the edge."""

__version__ = "0.1.0"
