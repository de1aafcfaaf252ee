"""Expected API errors: they reach the client with a machine-readable code; anything
else is masked as an unexpected error."""

from __future__ import annotations

from graphql import GraphQLError


class ApiError(GraphQLError):
    code = "BAD_REQUEST"

    def __init__(self, message: str, **details: object):
        super().__init__(message, extensions={"code": self.code, **details})


class Ambiguous(ApiError):
    code = "AMBIGUOUS_IDENTIFIER"


class Forbidden(ApiError):
    code = "FORBIDDEN"


class NotFound(ApiError):
    code = "NOT_FOUND"


class Conflict(ApiError):
    code = "CONFLICT"
