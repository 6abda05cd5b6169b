"""The dashboard's widgets and screens, one per file."""
