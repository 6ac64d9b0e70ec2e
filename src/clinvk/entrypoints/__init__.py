"""Entry points: the `clinvk` command and the one composition root."""
