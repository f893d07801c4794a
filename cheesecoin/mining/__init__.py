"""Mining: templates, nonce searchers (threads, worker processes), the service, the miner port."""
