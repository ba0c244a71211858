"""The one choke point for tenant scoping.

Every tenant-owned model inherits `OrgOwned`: it carries `organization` and a default manager
whose queryset has `.for_org(org)`. Views and selectors list through `for_org` and fetch single
rows through `get_for_org_or_404`, which answers 404 for a missing row and for another
organization's row alike, so an id from the request can never reach across tenants.
"""

from typing import TYPE_CHECKING, Self

from django.db import models
from django.http import Http404

if TYPE_CHECKING:
    from tenants.models import Organization


class OrgScopedQuerySet(models.QuerySet):
    def for_org(self, org: "Organization") -> Self:
        return self.filter(organization=org)

    def get_for_org_or_404(self, org: "Organization", **lookup: object) -> models.Model:
        try:
            return self.for_org(org).get(**lookup)
        except (self.model.DoesNotExist, ValueError, TypeError) as exc:
            raise Http404(f"No {self.model._meta.verbose_name} matches the given query.") from exc


class OrgOwned(models.Model):
    organization = models.ForeignKey(
        "tenants.Organization", on_delete=models.CASCADE, related_name="+"
    )

    objects = OrgScopedQuerySet.as_manager()

    class Meta:
        abstract = True
