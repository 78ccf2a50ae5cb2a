"""Every wake-up the outbox records NOTIFYs `sync_changes` with its channels
(PostgreSQL only): live pulls waiting in any process hear the commit at once
(sync.notify.live). A trigger rather than a NOTIFY in Python, so that the
outbox rows the database itself writes for captured writes (raw SQL, other
processes: sync.engine.capture) are heard too; those also NOTIFY
`sync_captured` with their id, for Celery workers to send them at once
rather than at the next sweep (sync.notify.wakeups).

PostgreSQL serialises the commits of transactions that NOTIFY: with many
concurrent tiny write transactions that costs throughput (docs/scaling.md,
"Instant"). `SET sync.notify = off` (per transaction with SET LOCAL, or for
a role or database with ALTER ... SET) records the wake-up without the
NOTIFY: it is then sent by the sweep, and live pulls hear of it when their
wait ends."""

from django.db import migrations

FUNCTION = """
CREATE OR REPLACE FUNCTION devices_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $notify$
DECLARE
  payload text;
BEGIN
  IF current_setting('sync.notify', true) = 'off' THEN
    RETURN NULL;
  END IF;
  SELECT string_agg(value, ',') INTO payload FROM jsonb_array_elements_text(NEW.channels);
  -- A NOTIFY payload stops at 8,000 bytes: past that, wake every waiter.
  IF payload IS NULL OR octet_length(payload) > 7900 THEN
    payload := '*';
  END IF;
  PERFORM pg_notify('sync_changes', payload);
  IF NEW.captured THEN
    PERFORM pg_notify('sync_captured', NEW.id::text);
  END IF;
  RETURN NULL;
END
$notify$;
DROP TRIGGER IF EXISTS devices_outbox_notify ON devices_pushoutbox;
CREATE TRIGGER devices_outbox_notify AFTER INSERT OR UPDATE OF channels ON devices_pushoutbox
  FOR EACH ROW EXECUTE FUNCTION devices_outbox_notify();
"""

REVERSE = """
DROP TRIGGER IF EXISTS devices_outbox_notify ON devices_pushoutbox;
DROP FUNCTION IF EXISTS devices_outbox_notify();
"""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FUNCTION)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(REVERSE)


class Migration(migrations.Migration):
    dependencies = [("devices", "0004_outbox_names")]

    operations = [migrations.RunPython(forward, backward, elidable=False)]
