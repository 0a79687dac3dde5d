"""edgecodec: a learned int8 image codec for edge cameras."""

__version__ = "0.1.0"
