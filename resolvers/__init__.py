"""The GraphQL API over the published profiles (strawberry on an ASGI server).

``resolvers.app.create_app`` is the app factory `unify serve` hands to uvicorn."""
