"""callbot gateway: Twilio webhooks, TwiML, outbound calls and the internal REST API.

The thin edge of callbot (DESIGN.md §1): it checks every Twilio signature,
turns webhooks into events or dialog RPCs, renders TwiML, places calls with
the Twilio REST client, and holds no call state.
"""
