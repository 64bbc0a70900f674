"""Load generation against the platform's HTTP API: open-loop, measured from planned times."""
