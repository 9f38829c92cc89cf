"""Security: tokens and roles, TLS/mTLS, safe defaults, key rotation, secret hygiene."""
