"""Where the stack and the wallet live on disk: SQLite, reindex, wallet files."""
