"""The OWASP API Security Top 10 (2023), one module per item that applies to
this server, each attacking it through HTTP as a client would and asserting
the outcome: the status, the `{"code", "detail"}` body, and that nothing was
read or written. docs/security.md maps each item to its tests and says why
API6, API7 and API10 do not call for tests of their own."""
