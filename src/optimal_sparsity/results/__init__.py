"""The results table: what evaluation writes and figures read."""
