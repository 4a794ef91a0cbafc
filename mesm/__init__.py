"""mesm: end-to-end and sparse multimodal emotion recognition from raw media."""

__version__ = "0.1.0"
