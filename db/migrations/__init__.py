"""Numbered migrations, applied in order by playhouse.migrations (see db.base.migrate).

Each file declares frozen copies of the tables it creates, independent of the live models,
so that an old migration keeps meaning the same thing as the models evolve.
"""
