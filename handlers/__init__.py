"""One module per OpenAPI tag; each function is the operationId of the same name.

Handlers are plain functions (Connexion runs them in a worker thread, where blocking Peewee
calls are fine); only handlers that touch no database are ``async``, which saves the hop.
"""
