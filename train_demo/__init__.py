"""Bucket Sort with every positional scheme: the project's end-to-end demo."""
