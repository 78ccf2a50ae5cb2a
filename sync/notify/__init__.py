"""Waking devices when something in their scope changed: the outbox row a
write records, the fan-out to its channels' devices, coalescing, and sending
through `devices.push` (see `wakeups`; the Celery tasks are in `sync.tasks`)."""
