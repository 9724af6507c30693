"""Idempotency records no longer keep secrets: the answers kept for ``create_api_key``
replays lose their ``secret`` (set to null, with the notice a replay now gives). Records are
kept 24 h, so this only scrubs the ones written before the upgrade."""

import json

NOTICE = (
    "The secret was shown once, in the first answer to this request; the hub keeps only its "
    "hash, so a replay cannot show it again."
)


def up(migrator, db):
    cursor = db.execute_sql(
        "SELECT id, body FROM idempotency_record"
        " WHERE operation_id = 'create_api_key' AND body IS NOT NULL"
    )
    for record_id, body in list(cursor.fetchall()):
        try:
            answer = json.loads(body)
        except ValueError:
            answer = None
        if isinstance(answer, dict) and answer.get("secret") is None:
            continue
        if isinstance(answer, dict):
            answer.update(secret=None, notice=NOTICE)
            scrubbed = json.dumps(answer, separators=(",", ":"))
        else:
            scrubbed = ""
        db.execute_sql(
            f"UPDATE idempotency_record SET body = {db.param} WHERE id = {db.param}",
            (scrubbed, record_id),
        )


def down(migrator, db):
    pass  # a scrubbed secret cannot come back
