"""Mining: the nonce search, templates, searchers, the service and the miner port."""
