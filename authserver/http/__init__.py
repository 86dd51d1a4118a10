"""The HTTP edge: the app factory, the edge middleware, the routes, the login page and readiness."""
