"""``AcceptorState.rebuilding`` and ``rebuild_target`` (consensus/core/rebuild.py).

New rows start rebuilding: a database created from now on is new storage, which must not vote
before its peers have told it what the group has seen. Rows that exist when this migration runs
belong to a node that has kept its database all along, so they are set to not rebuilding: an
upgrade must not make every node of a running cluster wait for all the others.
"""

from django.db import migrations, models


def existing_rows_vote(apps, schema_editor):
    acceptor_state = apps.get_model("consensus", "AcceptorState")
    acceptor_state.objects.using(schema_editor.connection.alias).update(rebuilding=False)


class Migration(migrations.Migration):
    dependencies = [("consensus", "0003_fewer_indexes")]

    operations = [
        migrations.AddField(
            model_name="acceptorstate",
            name="rebuilding",
            field=models.BooleanField(
                default=True,
                help_text="This node's storage for the group is new: it votes once its peers "
                "have told it what the group has seen and it has learned that much "
                "(consensus/core/rebuild.py).",
            ),
        ),
        migrations.AddField(
            model_name="acceptorstate",
            name="rebuild_target",
            field=models.PositiveBigIntegerField(
                blank=True,
                help_text="While rebuilding: the instance it must know chosen before it votes.",
                null=True,
                verbose_name="rebuild target",
            ),
        ),
        migrations.RunPython(existing_rows_vote, migrations.RunPython.noop, elidable=True),
    ]
