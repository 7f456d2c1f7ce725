"""callbot media worker: archives every finished call recording.

Consumes `call.recording`, copies the audio from Twilio to the recordings
bucket (checked by reading it back), optionally deletes it at Twilio, and
publishes `call.recording_archived` for persistence to store.
"""
