"""Who the signed-in administrator is (GetMe): auth's profile, the console role they
hold (an assigned role, else the system role named for the Lucid role of their token,
the role every rpc authorizes them by) and their live TOTP step-up."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from lucid.admin.clusters import AuthAsAdmin, Profile
from lucid.admin.store.roles import RoleRecord, RoleStore
from lucid.admin.store.stepups import StepUpStore
from lucid.common.v1 import access_pb2
from lucid.lib.clock import Clock

SYSTEM_ROLE_OF: dict[int, str] = {
    access_pb2.ROLE_SUPER_ADMIN: "super_admin",
    access_pb2.ROLE_ADMIN: "admin",
}


@dataclass(frozen=True)
class MeView:
    """The caller, their console role and step-up."""

    profile: Profile
    console_role: RoleRecord | None
    step_up_expires_at: datetime | None


class Me:
    """Assembles the caller's view."""

    def __init__(
        self, auth: AuthAsAdmin, roles: RoleStore, stepups: StepUpStore, clock: Clock
    ) -> None:
        self.auth = auth
        self.roles = roles
        self.stepups = stepups
        self.clock = clock

    async def me(self, token: str, role: int) -> MeView:
        """The caller of ``token`` (holding Lucid ``role``); auth's refusal if it does not
        know them."""
        profile = replace(await self.auth.profile(token), role=role)
        console = await self._role(profile)
        left = await self.stepups.ttl(profile.user_id)
        expires = self.clock.now() + timedelta(seconds=left) if left else None
        return MeView(profile, console, expires)

    async def _role(self, profile: Profile) -> RoleRecord | None:
        assigned = await self.roles.role_of(profile.user_id)
        if assigned:
            found = await self.roles.get(assigned)
            if found is not None:
                return found
        name = SYSTEM_ROLE_OF.get(profile.role)
        return await self.roles.by_name(name) if name else None
