"""Entry points: the FastAPI app and the typer CLI."""
