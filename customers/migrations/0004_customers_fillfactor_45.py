"""PostgreSQL: customers pages filled to 45 %, so that the daily batch, which re-scores nearly every
row, finds room for every new row version on its own page (HOT update, no index entries). At 70 %
only about 60 % of a full re-score was HOT (docs/adr/0015-room-for-a-full-rescore.md)."""

from django.db import migrations


def room_for_a_full_rescore(apps, schema_editor):
    # Applies to pages written from now on; `VACUUM FULL customers` applies it to existing ones
    # (it rewrites the table under an exclusive lock: run it in a quiet hour).
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE customers SET (fillfactor = 45)")


def back_to_70(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE customers SET (fillfactor = 70)")


class Migration(migrations.Migration):
    dependencies = [("customers", "0003_hot_score_updates")]

    operations = [migrations.RunPython(room_for_a_full_rescore, back_to_70)]
