"""`{{ code|emotion_name }}`: the emotion's name in the page's language. Codes stay English
wherever a machine reads them (form values, URLs, the API, export folders)."""

from django import template

from projects.models import Emotion

register = template.Library()


@register.filter
def emotion_name(code: str) -> str:
    try:
        return Emotion(code).label
    except ValueError:
        return code
