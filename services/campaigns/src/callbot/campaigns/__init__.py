"""callbot campaigns: calling lists as durable jobs (`python -m callbot.campaigns`)."""
