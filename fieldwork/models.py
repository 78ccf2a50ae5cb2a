"""A demo domain: customers, their work orders, and notes on those orders."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

import sync
from sync.models import SyncedModel


class Team(models.Model):
    """A crew; its members share the channel `team:<id>`."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100, unique=True)
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="TeamMembership", related_name="teams"
    )

    def __str__(self) -> str:
        return self.name

    @property
    def channel(self) -> str:
        return f"team:{self.pk}"


class TeamMembership(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["team", "user"], name="fieldwork_member_unique")
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.team}"


class Customer(SyncedModel):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    team = models.ForeignKey(Team, on_delete=models.PROTECT, null=True, blank=True)
    name = models.CharField(max_length=200)
    email = models.EmailField(blank=True)
    phone = models.CharField(max_length=40, blank=True)
    address = models.TextField(blank=True, max_length=1000)

    def __str__(self) -> str:
        return self.name


class WorkOrder(SyncedModel):
    class Status(models.TextChoices):
        OPEN = "open", "Open"
        SCHEDULED = "scheduled", "Scheduled"
        IN_PROGRESS = "in_progress", "In progress"
        DONE = "done", "Done"
        CANCELLED = "cancelled", "Cancelled"

    class Priority(models.TextChoices):
        LOW = "low", "Low"
        NORMAL = "normal", "Normal"
        HIGH = "high", "High"
        URGENT = "urgent", "Urgent"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    team = models.ForeignKey(Team, on_delete=models.PROTECT, null=True, blank=True)
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="work_orders")
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True, max_length=5000)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.OPEN)
    priority = models.CharField(max_length=8, choices=Priority.choices, default=Priority.NORMAL)
    scheduled_for = models.DateField(null=True, blank=True)
    due_at = models.DateTimeField(null=True, blank=True)
    estimated_hours = models.FloatField(null=True, blank=True)
    # The visit this one follows up; deleting that visit leaves this one standing.
    follow_up_of = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="follow_ups"
    )
    # A photo of the work done (docs/protocol.md, "Files"): the bytes are in blob storage.
    photo = sync.BlobField(null=True, blank=True)

    def __str__(self) -> str:
        return self.title


class Note(SyncedModel):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    team = models.ForeignKey(Team, on_delete=models.PROTECT, null=True, blank=True)
    # A note goes with its work order; a customer with work orders cannot be
    # deleted (their on_delete is what the sync service follows).
    work_order = models.ForeignKey(WorkOrder, on_delete=models.CASCADE, related_name="notes")
    body = models.TextField(max_length=5000)
    pinned = models.BooleanField(default=False)

    def __str__(self) -> str:
        return self.body[:50]


class Equipment(SyncedModel):
    """An appliance at a customer's site that technicians service. Its schema
    has changed since the first app that synced it, and older apps still in
    the field speak the older shapes (fieldwork/sync_registration.py)."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    team = models.ForeignKey(Team, on_delete=models.PROTECT, null=True, blank=True)
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="equipment")

    class Kind(models.TextChoices):
        BOILER = "boiler", "Boiler"
        HEAT_PUMP = "heat_pump", "Heat pump"
        AIR_CONDITIONER = "air_conditioner", "Air conditioner"
        WATER_HEATER = "water_heater", "Water heater"
        OTHER = "other", "Other"

    name = models.CharField(max_length=200)
    # Version 2 renamed `serial`; version 3 split `location` ("building, room");
    # version 4 added `kind`, required.
    serial_number = models.CharField(max_length=100, blank=True)
    building = models.CharField(max_length=150, blank=True)
    room = models.CharField(max_length=150, blank=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    installed_on = models.DateField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "equipment"

    def __str__(self) -> str:
        return self.name
