"""One tick of one host: poll, decide what to fetch, fetch, match, apply."""
