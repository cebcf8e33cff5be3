"""Engines: the models behind each service. Each has an offline default that needs no network."""
