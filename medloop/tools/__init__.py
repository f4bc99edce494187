"""The typed tool library: capabilities with pydantic inputs/outputs, used by medloop's own
agent and exposed to other agents (function-calling schemas, LangChain, MCP)."""
