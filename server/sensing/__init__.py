"""Sensing: the Pi's own sensors (sampling) and its GPIO inputs (PIR motion, buttons)."""
