"""The steps of a tracking round, each in the DB transaction workers/track.py opens for it.

observe.py   head, nonce counts, receipts and held attempts, read in batches (no DB)
pool.py      which possibly stranded attempts the node's pool lists as queued (txpool_*)
judge.py     each request's decision (decisions.py) and the round-wide rules (no DB, RPC)
record.py    write the round's outcomes: receipts in bulk, the rare ones row by row
mined.py     receipts, depth and finality of many requests at once (the common path)
outcomes.py  reorgs, foreign nonces and re-sends of one locked request (the rare path)
replace.py   fee bumps and cancels: a new attempt at the same nonce
"""
