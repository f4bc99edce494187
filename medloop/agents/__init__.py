"""The LangGraph campaign graph, planners (offline search, LLM) and prompts."""
