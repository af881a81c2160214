"""Salesforce and Salesforce Service Cloud sources.

    config.py   the connection's auth params, typed, and the retry policy
    client.py   the wire protocol: SOAP/OAuth login, REST with retries and re-login, query paging
    reader.py   SalesforceConnector: explore, describe (Arrow schema), read (Arrow batches, windows)
    errors.py   the errors raised, as subclasses of headwater.connectors.errors

Nothing is imported here: the registry imports reader.py when a flow or an explore request needs it.
"""
