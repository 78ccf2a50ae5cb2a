"""Equipment, schema version 3: `location` ("North wing, boiler room") is
split into `building` and `room` (fieldwork.sync_registration's
`split_location`, which older apps' pushes go through too)."""

from django.db import migrations, models

from sync.writers import service_writes


def split(apps, schema_editor):
    """Rewritten outside the feed (the capture's triggers stand aside: they
    are installed for the code's shape after `migrate`), then a targeted
    re-sync: every device fetches equipment again, and only equipment."""
    from fieldwork.sync_registration import split_location

    Equipment = apps.get_model("fieldwork", "Equipment")
    alias = schema_editor.connection.alias
    changed = 0
    with service_writes(alias):
        for item in Equipment.objects.using(alias).exclude(location="").iterator():
            parts = split_location(item.location)
            changed += Equipment.objects.using(alias).filter(pk=item.pk).update(**parts)
    if changed:
        apps.get_model("sync", "Resync").objects.using(alias).create(
            model="fieldwork.equipment", reason="location split into building and room"
        )


def join(apps, schema_editor):
    from fieldwork.sync_registration import join_location

    Equipment = apps.get_model("fieldwork", "Equipment")
    alias = schema_editor.connection.alias
    with service_writes(alias):
        for item in Equipment.objects.using(alias).iterator():
            location = join_location({"building": item.building, "room": item.room})
            Equipment.objects.using(alias).filter(pk=item.pk).update(location=location)


class Migration(migrations.Migration):
    dependencies = [
        ("fieldwork", "0007_equipment_serial_number"),
        ("sync", "0009_resync"),
    ]

    operations = [
        migrations.AddField(
            "equipment",
            "building",
            models.CharField(blank=True, max_length=150, default=""),
            preserve_default=False,
        ),
        migrations.AddField(
            "equipment",
            "room",
            models.CharField(blank=True, max_length=150, default=""),
            preserve_default=False,
        ),
        migrations.AddField(
            "historicalequipment",
            "building",
            models.CharField(blank=True, max_length=150, default=""),
            preserve_default=False,
        ),
        migrations.AddField(
            "historicalequipment",
            "room",
            models.CharField(blank=True, max_length=150, default=""),
            preserve_default=False,
        ),
        migrations.RunPython(split, join),
        migrations.RemoveField("equipment", "location"),
        migrations.RemoveField("historicalequipment", "location"),
    ]
