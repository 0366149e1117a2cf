"""Budgets for the expensive API endpoints, named by route in settings.API_THROTTLED_ROUTES
(route name -> rate scope), so the apps' views stay as they are. Each request must fit two
budgets: its user's (or, anonymous, its address's) and its address's, so neither many accounts
behind one address nor one account from many addresses gets more than its share."""

from django.conf import settings
from rest_framework.throttling import SimpleRateThrottle


class RouteUserThrottle(SimpleRateThrottle):
    def __init__(self):
        pass  # the rate depends on the route, known only in allow_request

    def allow_request(self, request, view) -> bool:
        match = request.resolver_match
        self.scope = settings.API_THROTTLED_ROUTES.get(match.url_name if match else None)
        if not self.scope:
            return True
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)

    def get_cache_key(self, request, view) -> str | None:
        user = request.user
        if not (user and user.is_authenticated):
            return None  # an anonymous request has only its address's budget
        return self.cache_format % {"scope": self.scope, "ident": f"user:{user.pk}"}


class RouteAddressThrottle(RouteUserThrottle):
    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": self.scope, "ident": f"ip:{self.get_ident(request)}"}
