"""search (VideoSearcher grep): the clips whose transcript contains the query, copied as matches."""
