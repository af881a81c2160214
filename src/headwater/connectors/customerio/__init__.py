"""Customer.io as a streaming source (``spec.json``): its reporting webhooks post events to an inlet.

    webhook.py  the request signature check (X-CIO-Signature over ``v0:{timestamp}:{body}``) and the
                name of the signing-key auth param

There is no reader: events arrive through the collection route (api/routes/collection.py), which
verifies signatures with :func:`webhook.check_signature`, and are routed by services/streaming.py.
"""
