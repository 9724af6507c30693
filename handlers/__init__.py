"""One module per OpenAPI tag; each function is the operationId of the same name."""
