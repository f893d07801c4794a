"""Member to member: one connection, its states, the peer manager, sync, relay, the tracker link."""
