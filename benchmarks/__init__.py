"""``make bench``: CallFS against nginx and the SeaweedFS filer, on one machine, in one run."""
