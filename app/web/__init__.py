"""HTTP surface of the governance core: the JSON API, its OpenAPI document, and the hardening every
response gets (security headers, rate limits) and the probes."""
