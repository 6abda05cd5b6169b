"""Profiles: the TOML files a run is built from. See schema.py for every field."""
from .schema import SECTIONS, Profile, section_fields
from .store import dumps, find, is_bundled, list_profiles, load_named, save, write_atomic
from .validate import Problem, ProfileError, check_field, field_problem, load, loads, validate

__all__ = ["SECTIONS", "Profile", "section_fields", "dumps", "find", "is_bundled", "list_profiles", "load_named",
           "save", "write_atomic", "Problem", "ProfileError", "check_field", "field_problem", "load", "loads", "validate"]
