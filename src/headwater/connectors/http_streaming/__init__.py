"""The HTTP API streaming inlet (``spec.json``): clients post JSON messages to an inlet URL that a
connection of this spec owns. It has no reader: messages arrive through the collection route
(api/routes/collection.py) and are routed by services/streaming.py; this folder holds the spec."""
