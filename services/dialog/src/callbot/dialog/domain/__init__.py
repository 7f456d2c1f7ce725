"""The conversation's pure core: no aio_pika, pymongo or openai in here."""
