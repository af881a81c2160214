"""Microsoft Dynamics 365 (Dataverse) source.

    config.py   the connection's auth params, typed, and the retry policy
    client.py   the wire protocol: Azure AD tokens, OData v4 with retries and token renewal, next links
    reader.py   DynamicsConnector: explore, describe (Arrow schema), read (Arrow batches, windows)
    errors.py   the errors raised, as subclasses of headwater.connectors.errors

Nothing is imported here: the registry imports reader.py when a flow or an explore request needs it.
"""
