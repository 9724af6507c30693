"""One module per OpenAPI tag; each function is the operationId of the same name.

Handlers are plain functions (Connexion runs them in a worker thread, where blocking Peewee
calls are fine); only handlers that touch no database are ``async``, which saves the hop.
"""


def body_fields(model, body) -> dict:
    """``body`` read through its generated model: JSON-ready values, only the fields the
    client sent (so a service can tell "absent" from "null")."""
    return model.model_validate(body).model_dump(mode="json", exclude_unset=True)
