"""Generated stubs for stageconfig.v1 (scripts/gen-protos). Do not edit."""
