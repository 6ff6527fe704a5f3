"""proxytier tests (a package, so that every folder runs in one pytest session)."""
