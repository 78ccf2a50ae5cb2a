"""The doors that decide, and the change feed they write.

- where a push is applied: `push.push_apply` → `write.mutations_apply` →
  `batch` (load, merge through `sync.merge`, write, flush);
- where a pull page is served: `pull.pull_page`, reading `feed` from a `cursor`;
- where a conflict is resolved: `conflicts.conflict_resolve` / `conflict_dismiss`;
- who sees what: `scope`; channel membership: `grants`;
- writes made outside the service (the ORM, SQL): `capture`;
- housekeeping: `compaction`, `integrity` (`manage.py sync_check`), `privacy`.
"""
