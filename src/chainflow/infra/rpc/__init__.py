"""JSON-RPC: the client, error classification and endpoint failover."""
