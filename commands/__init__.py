"""Command side: command models, handlers and the single-writer engine with group commit."""
