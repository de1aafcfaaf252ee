"""Who may call a field or mutation, declared where it is defined:

    @strawberry.mutation(description="...", extensions=[Roles(Role.STEWARD, Role.ADMIN)])

``Roles`` is a strawberry field extension (the public ``FieldExtension``): before the
field's resolver runs, a caller of another role gets FORBIDDEN, naming the allowed roles
and the caller's; and the field's description in the schema ends with the allowed roles
("Roles: steward, admin."), written by the same declaration. Value masking (contact PII
hidden from some roles, ``resolvers.context.pii``) is not access control and stays in
the resolvers.

Not strawberry's ``PermissionExtension`` (or ``permission_classes``): its ``resolve``
takes the parent object as a parameter named ``source``, so on a field with an argument
named ``source`` (``ingestRecord``) every call fails with a TypeError ("got multiple
values for argument 'source'"); and ``BasePermission.on_unauthorized`` is not told who
asked. Here those parameters are positional-only."""

from __future__ import annotations

import inspect
from typing import Any

from strawberry.extensions import FieldExtension
from strawberry.extensions.field_extension import AsyncExtensionResolver, SyncExtensionResolver
from strawberry.types import Info
from strawberry.types.field import StrawberryField

from resolvers.auth import Role
from resolvers.errors import Forbidden


def refusal(allowed: tuple[Role, ...], caller: Role) -> str:
    """The FORBIDDEN message: who may, and who asked."""
    return f"only the {' or '.join(r.value for r in allowed)} role may do this (you are {caller.value})"


class Roles(FieldExtension):
    """The roles allowed to call a field: checked before its resolver runs, and named at
    the end of its description in the schema."""

    def __init__(self, *roles: Role):
        if not roles:
            raise ValueError("Roles needs at least one role")
        self.roles = roles

    @property
    def note(self) -> str:
        return f"Roles: {', '.join(r.value for r in self.roles)}."

    def apply(self, field: StrawberryField) -> None:
        # strawberry applies extensions on every schema build, and a type's inherited
        # fields are copies sharing this extension: add the note once
        description = field.description or ""
        if not description.endswith(self.note):
            field.description = f"{description} {self.note}".strip()

    def check(self, info: Info) -> None:
        role = info.context.principal.role
        if role not in self.roles:
            raise Forbidden(refusal(self.roles, role))

    # positional-only: a field's own arguments (``source``, ``info``) arrive in kwargs
    def resolve(self, next_: SyncExtensionResolver, source: Any, info: Info, /, **kwargs: Any) -> Any:  # type: ignore[override]
        self.check(info)
        return next_(source, info, **kwargs)

    async def resolve_async(self, next_: AsyncExtensionResolver, source: Any, info: Info, /, **kwargs: Any) -> Any:  # type: ignore[override]
        self.check(info)
        result = next_(source, info, **kwargs)
        return result if inspect.isasyncgen(result) else await result


def declared_roles(field: StrawberryField) -> tuple[Role, ...] | None:
    """The roles a field declares (None: open to every role)."""
    found = [e for e in field.extensions if isinstance(e, Roles)]
    if not found:
        return None
    return tuple(r for r in Role if all(r in e.roles for e in found))
