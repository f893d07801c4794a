"""The HTTP API, events and explorer: the HTTP channel over fake transports."""
