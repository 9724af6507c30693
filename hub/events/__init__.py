"""The event log: emit and the bus that fans new events out."""
