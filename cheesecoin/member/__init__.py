"""The member's twistd tap: it wires the core, storage, p2p, mining and web together."""
