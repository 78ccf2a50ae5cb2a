import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("sync", "0008_mutation_digest")]

    operations = [
        migrations.CreateModel(
            name="Resync",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("model", models.CharField(help_text="The model's label.", max_length=100)),
                ("reason", models.CharField(blank=True, max_length=200)),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
            ],
            options={
                "verbose_name": "re-sync of a model",
                "verbose_name_plural": "re-syncs of models",
            },
        ),
    ]
