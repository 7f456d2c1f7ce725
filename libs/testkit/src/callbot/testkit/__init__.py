"""Test harness for callbot: scripted stand-ins for external services and pytest fixtures."""
