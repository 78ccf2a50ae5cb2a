"""Equipment, schema version 4: `kind`, required. Existing rows get the kind
their name suggests, as older apps' creates do (`kind_from_name`)."""

from django.db import migrations, models

from sync.writers import service_writes

CHOICES = [
    ("boiler", "Boiler"),
    ("heat_pump", "Heat pump"),
    ("air_conditioner", "Air conditioner"),
    ("water_heater", "Water heater"),
    ("other", "Other"),
]


def fill(apps, schema_editor):
    from fieldwork.sync_registration import kind_from_name

    Equipment = apps.get_model("fieldwork", "Equipment")
    alias = schema_editor.connection.alias
    changed = 0
    # Outside the feed, then a targeted re-sync (as in 0008).
    with service_writes(alias):
        for item in Equipment.objects.using(alias).iterator():
            kind = kind_from_name({"name": item.name})
            changed += Equipment.objects.using(alias).filter(pk=item.pk).update(kind=kind)
    if changed:
        apps.get_model("sync", "Resync").objects.using(alias).create(
            model="fieldwork.equipment", reason="kind filled in from the name"
        )


class Migration(migrations.Migration):
    dependencies = [("fieldwork", "0008_equipment_building_room")]

    operations = [
        migrations.AddField(
            "equipment",
            "kind",
            models.CharField(choices=CHOICES, max_length=16, default="other"),
            preserve_default=False,
        ),
        migrations.AddField(
            "historicalequipment",
            "kind",
            models.CharField(choices=CHOICES, max_length=16, default="other"),
            preserve_default=False,
        ),
        migrations.RunPython(fill, migrations.RunPython.noop),
    ]
