"""Readings: the one reading type and its validation, its JSON body rules, the ordering path, the history."""
