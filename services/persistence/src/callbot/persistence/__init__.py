"""callbot persistence: the only writer of MongoDB.

Consumes every call event, keeps the call document up to date, and publishes
`call.completed` exactly once per call in effect. Serves the agent-save RPC.
"""
