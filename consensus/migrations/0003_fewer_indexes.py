"""Drop three indexes that every vote, chosen mark or result paid for and no query needed.

* ``consensus_instance_chosen`` (group, chosen, instance): the chosen prefix, catch-up reads and
  the log views scan (group, instance) ranges, which the unique (group, instance) index serves;
  rows voted but not chosen are only the few in flight.
* The foreign keys' own indexes on ``group``: the unique (group, instance) and (group, request
  id) indexes start with ``group`` and serve every look-up by group.

The foreign keys' indexes are dropped by name (Django's names, the same on SQLite and
PostgreSQL), so that SQLite need not copy both tables to change ``db_index``.
"""

import django.db.models.deletion
from django.db import migrations, models

FOREIGN_KEY_INDEXES = [
    ("consensus_instance", "consensus_instance_group_id_41768370"),
    ("consensus_requestresult", "consensus_requestresult_group_id_d01b2704"),
]


class Migration(migrations.Migration):
    dependencies = [
        ("consensus", "0002_result_instance_index"),
    ]

    operations = [
        migrations.RemoveIndex(model_name="instance", name="consensus_instance_chosen"),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="instance",
                    name="group",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="instances",
                        to="consensus.group",
                    ),
                ),
                migrations.AlterField(
                    model_name="requestresult",
                    name="group",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="request_results",
                        to="consensus.group",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    f'DROP INDEX IF EXISTS "{index}"',
                    reverse_sql=f'CREATE INDEX "{index}" ON "{table}" ("group_id")',
                )
                for table, index in FOREIGN_KEY_INDEXES
            ],
        ),
    ]
