"""The application: the `unify` command line and the server's start-up. The one layer
that sees all the others (profiles <- pipelines <- resolvers <- unify)."""
