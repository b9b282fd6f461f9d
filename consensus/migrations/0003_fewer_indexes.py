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


def _group_without_index(model_name: str, related_name: str) -> migrations.AlterField:
    return migrations.AlterField(
        model_name=model_name,
        name="group",
        field=models.ForeignKey(
            db_index=False,
            on_delete=django.db.models.deletion.CASCADE,
            related_name=related_name,
            to="consensus.group",
        ),
    )


class Migration(migrations.Migration):
    dependencies = [
        ("consensus", "0002_result_instance_index"),
    ]

    operations = [
        migrations.RemoveIndex(model_name="instance", name="consensus_instance_chosen"),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                _group_without_index("instance", related_name="instances"),
                _group_without_index("requestresult", related_name="request_results"),
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
