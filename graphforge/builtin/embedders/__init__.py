"""Built-in embedder plugins."""
