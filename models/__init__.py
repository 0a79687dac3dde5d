"""Trained model files, installed as the package ``edgecodec.zoo`` (see docs/models.md)."""
