"""The simulator: many real members on one virtual clock (cheesecoin simulate)."""
