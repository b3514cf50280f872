"""Disaster-recovery drills and recovery objectives (docs/ARCHITECTURE.md, "Drills")."""
