"""stageconfig_contract: what the server and every client agree on.

- ``stageconfig_contract.v1``: the generated protobuf and gRPC stubs of
  ``protos/stageconfig/v1/stage_config.proto`` (``scripts/gen-protos``; never edited).
- ``stageconfig_contract.facts``: the domain facts both sides need and that the proto
  cannot say: the allowed provider matrix, each provider's options, the environment
  names, and how a key is masked for people.

Importing this package imports neither the server nor the client, and starts nothing:
the server's servicer and the worker client both build on it.
"""

__version__ = "0.2.0"
"""The one version of the contract, the client and the server (both distributions read it
from here; ``stageconfigctl --version`` shows it)."""
