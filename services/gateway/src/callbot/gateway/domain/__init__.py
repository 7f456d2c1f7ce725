"""The gateway's pure core: TwiML rendering, fallback replies, form parsing,
callback URLs, the outbound-call request and the events built from Twilio's
callbacks. Nothing here imports aio_pika, pymongo, fastapi or the Twilio REST
client."""
