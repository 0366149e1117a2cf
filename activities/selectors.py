"""Reads for the activity pages."""

from django.db.models import QuerySet

from .models import DanceScore


def dance_best_scores(user, limit: int = 5) -> QuerySet[DanceScore] | list:
    """The visitor's highest scores, best first; nothing for anonymous visitors."""
    if not user.is_authenticated:
        return []
    return DanceScore.objects.filter(user=user).order_by("-score", "-created_at")[:limit]
