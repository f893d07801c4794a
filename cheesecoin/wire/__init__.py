"""The JSON-line wire: the codec (pure) and the Twisted line protocol every service shares."""
