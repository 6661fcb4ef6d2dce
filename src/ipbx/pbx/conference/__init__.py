"""Conference rooms: callers who reach `conference:NAME` talk together in one mix."""
