"""stageconfig server: per-stage AI provider configuration over gRPC."""

__version__ = "0.1.0"
