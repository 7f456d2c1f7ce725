"""callbot dialog: the conversation behind `dialog.start` and `dialog.turn`.

`domain/` holds the pure policy (sessions, prompt assembly, validators,
endings, the deterministic policy); `store`, `llm` and `service` are the
adapters to MongoDB, the OpenAI-compatible API and RabbitMQ; `handlers`
runs one RPC against the ports it is given.
"""
