"""The chain registry: chains, their RPC endpoints, fee caps and confirmation depth."""
