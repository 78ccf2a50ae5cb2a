"""The plumbing under `sync` and `devices`: the `{"code", "detail"}` errors,
JSON rendering and parsing, compression, the request log, health probes,
bulk writes and PostgreSQL helpers. It imports no app of ours."""
