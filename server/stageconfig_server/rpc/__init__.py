"""The gRPC transport: proto ↔ domain conversion, the servicer, auth, errors, the server."""
