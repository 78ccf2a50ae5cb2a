from __future__ import annotations

import random
import uuid
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.utils import timezone

from fieldwork.models import Team
from fieldwork.services import team_member_add
from sync.engine.write import mutations_apply

EQUIPMENT = (
    ("boiler", "Boiler, wall-hung 24 kW"),
    ("heat_pump", "Heat pump, outdoor unit"),
    ("water_heater", "Water heater 80 l"),
)

# Demo-only logins, printed by `make run`; never created outside the demo seeder.
DEMO_USERS = (("demo", "demo-pass-1234"), ("alice", "alice-pass-1234"))


class Command(BaseCommand):
    help = (
        "Create demo users, a team and some customers, their equipment, work orders "
        "and notes (idempotent)."
    )

    def handle(self, *args: object, **options: object) -> None:
        user_model = get_user_model()
        if user_model.objects.filter(username=DEMO_USERS[0][0]).exists():
            self._print_logins("Demo data already present.")
            return
        users = []
        for username, password in DEMO_USERS:
            user = user_model.objects.create_user(username=username, password=password)
            users.append(user)
        admin = user_model.objects.create_superuser("admin", password="admin-pass-1234")  # noqa: S106
        team, _ = Team.objects.get_or_create(name="North crew")
        for user in users:
            team_member_add(team=team, user=user)
        rng = random.Random(7)  # noqa: S311 - demo data, not security
        today = timezone.now().date()
        for user in users:
            mutations = []
            for c in range(5):
                customer_id = str(uuid.uuid4())
                mutations.append(
                    _create(
                        "fieldwork.customer",
                        customer_id,
                        {
                            "name": f"{user.username.title()} customer {c + 1}",
                            "email": f"contact{c + 1}@example.com",
                            "address": f"{rng.randint(1, 200)} Main Street",
                            "team": str(team.pk) if c % 2 == 0 else None,
                        },
                    )
                )
                kind, name = EQUIPMENT[c % len(EQUIPMENT)]
                mutations.append(
                    _create(
                        "fieldwork.equipment",
                        str(uuid.uuid4()),
                        {
                            "customer": customer_id,
                            "name": name,
                            "kind": kind,
                            "serial_number": f"SN-{rng.randint(100000, 999999)}",
                            "building": "Main house",
                            "room": rng.choice(["Basement", "Utility room", "Garage"]),
                            "team": str(team.pk) if c % 2 == 0 else None,
                        },
                    )
                )
                for w in range(3):
                    order_id = str(uuid.uuid4())
                    mutations.append(
                        _create(
                            "fieldwork.workorder",
                            order_id,
                            {
                                "customer": customer_id,
                                "title": f"Service visit {w + 1}",
                                "status": rng.choice(["open", "scheduled", "in_progress"]),
                                "priority": rng.choice(["low", "normal", "high"]),
                                "scheduled_for": (
                                    today + timedelta(days=rng.randint(0, 14))
                                ).isoformat(),
                                "estimated_hours": rng.choice([1.0, 1.5, 2.0, 4.0]),
                                "team": str(team.pk) if c % 2 == 0 else None,
                            },
                        )
                    )
                    mutations.append(
                        _create(
                            "fieldwork.note",
                            str(uuid.uuid4()),
                            {
                                "work_order": order_id,
                                "body": "Bring the ladder; gate code 1234.",
                                "team": str(team.pk) if c % 2 == 0 else None,
                            },
                        )
                    )
            outcome = mutations_apply(user=user, mutations=mutations, reason="demo data")
            bad = [r for r in outcome.results if r.status != "applied"]
            if bad:
                raise RuntimeError(f"demo data was refused: {bad[0]}")
        self._print_logins(f"Demo data created (admin login: {admin.username} / admin-pass-1234).")

    def _print_logins(self, headline: str) -> None:
        self.stdout.write(self.style.SUCCESS(headline))
        for username, password in DEMO_USERS:
            self.stdout.write(f"  demo login: {username} / {password}")


def _create(model: str, object_id: str, data: dict[str, object]) -> dict[str, object]:
    return {
        "mutation_id": str(uuid.uuid4()),
        "model": model,
        "op": "create",
        "id": object_id,
        "base_version": None,
        "data": data,
    }
