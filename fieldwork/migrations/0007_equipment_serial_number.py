"""Equipment, schema version 2: `serial` is now `serial_number`."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("fieldwork", "0006_equipment")]

    operations = [
        migrations.RenameField("equipment", "serial", "serial_number"),
        migrations.RenameField("historicalequipment", "serial", "serial_number"),
    ]
