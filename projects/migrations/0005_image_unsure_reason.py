from django.conf import settings
from django.db import migrations, models


def mark_unsure(apps, schema_editor):
    # Images labeled before this migration get the reason they would get now, so that no-face and
    # low-confidence labels leave the emotion folders of the next export too.
    image = apps.get_model("projects", "Image")
    labeled = image.objects.filter(status="labeled")
    labeled.filter(face_path="whole").update(unsure_reason="no_face")
    labeled.filter(unsure_reason="", confidence__lt=settings.UNSURE_MIN_CONFIDENCE).update(
        unsure_reason="low_confidence"
    )


class Migration(migrations.Migration):
    dependencies = [
        ("projects", "0004_label_policy_default_and_choice"),
    ]

    operations = [
        migrations.AddField(
            model_name="image",
            name="unsure_reason",
            field=models.CharField(
                blank=True,
                choices=[("no_face", "no face found"), ("low_confidence", "the model is unsure")],
                max_length=16,
            ),
        ),
        migrations.AlterField(
            model_name="image",
            name="face_path",
            field=models.CharField(
                blank=True,
                choices=[
                    ("detected", "face found (BlazeFace, else Haar cascade)"),
                    ("whole", "no face found: whole image used"),
                    ("small", "face crop: whole image used"),
                    ("blank", "blank image: nothing to find"),
                ],
                max_length=10,
            ),
        ),
        migrations.RunPython(mark_unsure, migrations.RunPython.noop),
    ]
