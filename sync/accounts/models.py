"""API tokens (for device users and service accounts alike) and service accounts.

Tokens are django-rest-knox tokens: several per account, stored as a SHA-512
digest (the secret is shown once, when issued), with an optional expiry.
Knox is used rather than DRF's `authtoken` (one token per user, stored in
clear) or hand-written storage: it is maintained, hashes tokens, and lets the
token model be our own (`KNOX_TOKEN_MODEL`), which adds what staff need to
manage them: a name, when it was last used, and whether use extends it.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from knox.models import AbstractAuthToken


class Token(AbstractAuthToken):
    name = models.CharField(max_length=100, blank=True, help_text="What it is for.")
    # A login token's expiry moves forward while it is used; a token staff
    # issued to a service account keeps the expiry it was given.
    sliding = models.BooleanField(default=False)
    last_used_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="Staff who issued it; empty for a login.",
    )

    # Not a field: the columns of a row that authentication read together
    # with the token (sync.api.auth.Companion), or () when it read none.
    companion_row: tuple = ()

    class Meta:
        verbose_name = "API token"
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"{self.token_key}… ({self.name or 'token'}) of {self.user}"

    @property
    def expired(self) -> bool:
        return self.expiry is not None and self.expiry <= timezone.now()


class ServiceAccount(models.Model):
    """A back-office system (ERP, CRM, an import job) that uses the data API.

    It is a user that cannot log in with a password. What it may do per model
    is the user's Django model permissions (view / add / change / delete). What
    it may see is every object, unless `restricted`: then only the channels
    granted to its user (`sync.models.ChannelGrant`, managed here).
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="service_account"
    )
    description = models.TextField(blank=True)
    restricted = models.BooleanField(
        default=False,
        help_text="Limit it to the channels granted to it; otherwise it sees every object "
        "of the models it may view.",
    )
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.user.get_username()
