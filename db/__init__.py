"""Storage: Peewee models and the queries next to them, one module per aggregate."""
