"""The cheesecoin command."""
