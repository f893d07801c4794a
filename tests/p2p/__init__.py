"""Member connections, sync and relay: trial TestCases over fake transports."""
