"""The hub's benchmarks: each measurement beside its reference, in one run.

``python -m bench`` (``make bench``) runs six scenarios, in this order, each starting its own
servers on its own temporary data and stopping them before the next one starts:

* ``requests`` (``bench.requests``): per-request overhead against a bare Starlette + Peewee app;
* ``streaming`` (``bench.streaming``): what the hub adds to a token stream, against the
  upstream read directly;
* ``concurrency`` (``bench.concurrency``): how many simultaneous SSE streams one worker holds;
* ``tasks`` (``bench.tasks``): the task queue end to end, and its claim against raw SQL;
* ``memory`` (``bench.memory``): keyword search over HTTP, in process and as raw SQL;
* ``events`` (``bench.events``): event ingest and SSE fan-out against a bare app.

``bench.harness`` starts the servers and measures CPU; ``bench.references`` holds the
reference apps and raw-SQL references; ``bench.report`` renders every table (and, with
``--write``, the generated part of docs/performance.md). ``python -m bench --smoke`` runs every
scenario at tiny sizes, as a check that the bench still works (CI runs it), not a measurement.
"""
