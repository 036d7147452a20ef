"""The VideoSearcher pipeline as a function: drives the stage functions through the gateway."""
