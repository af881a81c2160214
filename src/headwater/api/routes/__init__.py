"""One router per reference API: IMS tokens, Flow Service, Schema Registry, Catalog, Conversion."""
