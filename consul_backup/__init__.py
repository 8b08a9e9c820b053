"""consul-backup operator CLI: list, verify, download, restore and run backups."""
