"""`prober run` as processes: the probing process (`probe`) and the web process (`web`) it
supervises (`supervisor`), the private channel between them (`control`) and the lock that
keeps one `prober run` per database (`lock`). See docs/ARCHITECTURE.md."""
