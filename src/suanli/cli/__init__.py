"""The `suanli` command line (Typer + Rich), a client of the REST API."""
