"""Identities from an upstream OpenID Connect provider (Auth0, Keycloak, Google, Entra ID...).

- :mod:`.upstream`: what is trusted (issuer, audience, claim names, algorithms); pure.
- :mod:`.verifier`: checks one JWT against one provider key at a given time; pure.
- :mod:`.claims`: turns verified claims into an :class:`~authserver.identity.Identity`; pure.
- :mod:`.jwks`: the provider's discovery document and keys, fetched with httpx and cached.
- :mod:`.bearer`: the ``Authorization: Bearer`` authenticator, with a cache of verified tokens.
"""
