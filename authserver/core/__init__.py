"""The pure Ably domain: keys, capabilities, client ids, channel claims, policy, tokens, token requests and
issuance. Plain function calls: no I/O, no framework, no environment."""
