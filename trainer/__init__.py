"""Sortline trainer: labelled photos -> fine-tuned VGG16 -> int8 TFLite model bundle for the edge."""

__version__ = "0.1.0"
