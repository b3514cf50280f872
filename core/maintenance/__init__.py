"""Repository upkeep: retention (which snapshots stay), prune (what leaves storage), repack."""
