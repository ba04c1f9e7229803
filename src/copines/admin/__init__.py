"""The agency's console: access control, analytics, knowledge gaps (the routes live in api/)."""
