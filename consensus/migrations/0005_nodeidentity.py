"""``NodeIdentity``: which node a database belongs to (consensus/storage/identity.py). An existing
database gets its row at the node's next start, from the node that starts on it."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("consensus", "0004_acceptorstate_rebuilding"),
    ]

    operations = [
        migrations.CreateModel(
            name="NodeIdentity",
            fields=[
                (
                    "id",
                    models.PositiveSmallIntegerField(
                        default=1, editable=False, primary_key=True, serialize=False
                    ),
                ),
                ("node_id", models.PositiveIntegerField(verbose_name="node id")),
                ("created_at", models.DateTimeField(auto_now_add=True, verbose_name="created at")),
            ],
            options={
                "verbose_name": "node identity",
                "verbose_name_plural": "node identity",
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(("id", 1)), name="consensus_nodeidentity_single_row"
                    )
                ],
            },
        ),
    ]
