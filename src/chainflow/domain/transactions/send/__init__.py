"""Sending signed attempts, for drains and tracking rounds alike (workers/send.py runs it).

broadcast.py   eth_sendRawTransaction in batches, and what kind of answer each is
answers.py     record every answer of a batch in bulk: accepted, refused, refused for good
nonce_gaps.py  release or fill the nonce of a request refused for good (no gaps)
"""
