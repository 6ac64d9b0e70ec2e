"""clinvk: the AI coding CLIs as programmable infrastructure."""

__version__ = "0.1.0"
