"""callbot.common: contracts, settings, messaging and adapters shared by the services."""
