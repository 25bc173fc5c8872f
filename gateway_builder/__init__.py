"""gateway-builder: turn policy manifests into a tested, reproducible gateway-runtime image."""

__version__ = "0.1.0"
