"""The tracker: its registry (pure), its protocol and factory, its twistd tap."""
