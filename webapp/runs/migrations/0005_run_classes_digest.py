from django.db import migrations, models


def fill_digests(apps, schema_editor):
    from webapp.runs.class_lists import classes_digest

    Run = apps.get_model("runs", "Run")
    for run in Run.objects.only("pk", "config").iterator(chunk_size=500):
        Run.objects.filter(pk=run.pk).update(classes_digest=classes_digest(run.config))


class Migration(migrations.Migration):

    dependencies = [
        ('runs', '0004_run_groups_exports'),
    ]

    operations = [
        migrations.AddField(
            model_name='run',
            name='classes_digest',
            field=models.CharField(default='', editable=False, help_text="sha256 of the config's class names in order (set on save)", max_length=64),
            preserve_default=False,
        ),
        migrations.RunPython(fill_digests, migrations.RunPython.noop),
        migrations.AddIndex(
            model_name='run',
            index=models.Index(fields=['owner', 'method', 'status', 'target_dataset', 'student', 'classes_digest'], name='run_baseline_lookup'),
        ),
    ]
