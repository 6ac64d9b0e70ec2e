"""The OpenAI-compatible dialect (`/openai/v1`)."""
