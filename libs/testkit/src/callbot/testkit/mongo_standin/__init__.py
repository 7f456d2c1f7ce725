"""A MongoDB-wire stand-in for test machines without MongoDB.

It speaks the real wire protocol (OP_MSG, and OP_QUERY for the handshake) so
the real PyMongo async driver is what the tests exercise; the storage and
query engine is mongomock's. `python -m callbot.testkit.mongo_standin` runs
it as a process; `start_standin_process` starts one for a test session.
"""

from callbot.testkit.mongo_standin.process import MongoStandinProcess, start_standin_process
from callbot.testkit.mongo_standin.server import MongoStandin

__all__ = ["MongoStandin", "MongoStandinProcess", "start_standin_process"]
