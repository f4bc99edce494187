"""Planners: offline knowledge-guided search and the LLM planner."""
