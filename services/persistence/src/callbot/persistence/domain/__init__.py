"""persistence's domain: the call-document projection, status ordering, how a
call ended, and what the outgoing events carry. Imports no adapter."""
