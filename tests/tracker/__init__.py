"""The tracker protocol and registry: trial TestCases over fake transports."""
