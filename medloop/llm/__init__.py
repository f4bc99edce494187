"""LLM clients behind one protocol: litellm for any provider, scripted for tests."""
