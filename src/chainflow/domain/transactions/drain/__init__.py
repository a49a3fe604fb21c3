"""The steps of a lane drain, each in the DB transaction workers/drain.py opens for it.

plan.py       the node's counts of each lane; the lanes to drain and what each can sign
fee_floor.py  requests whose fee cap cannot pay the base fee wait, or expire with why
estimate.py   gas estimates before any nonce is taken; a revert fails, burns nothing
sign.py       take nonces and sign under the lane locks: the write-ahead step
"""
