"""Canonical 12-lead names and the mapping of whatever a file calls its leads onto them."""

CANONICAL_LEADS: tuple[str, ...] = (
    "I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6",
)
