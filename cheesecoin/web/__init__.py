"""The member's HTTP API, its HTTP connection and the explorer page."""
