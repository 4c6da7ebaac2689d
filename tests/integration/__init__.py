"""Integration tests: the real znp binary over HTTP and gRPC against its embedded PostgreSQL."""
