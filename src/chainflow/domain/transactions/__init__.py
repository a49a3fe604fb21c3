"""Transaction requests: submission, then the engine that signs, sends and tracks them.

    models.py       the three tables: requests, their signed attempts, their event log
    rows.py         typed rows of those tables and one builder per table (the Core paths)
    state.py*       the state machine of a request, and the kinds and statuses of both
    transitions.py  the one writer of status changes (status + tx_events, ORM or bulk)
    config.py*      the engine's knobs, a chain's settings for one round
    fees.py*        fee math: suggestions, caps, bumps, the fee floor
    decisions.py*   what the tracker does with one request, given what the chain shows
    market.py       market fees from the node, cached per process
    attempts.py     build and sign attempts; the per-process signer cache
    node.py         the ChainRpc port, and wallets' nonce counts
    service.py      use cases of the API: submit, read, list, cancel (schemas.py, errors.py,
                    idempotency.py, calldata.py, calldata_size.py, doorbell.py serve it)
    repository/     all SQL: reads, locks (one helper, one order), bulk writes, intake
    drain/          the steps of a lane drain: plan, estimate, fee floor, sign
    track/          the steps of a tracking round: observe, judge, record, replace
    send/           what a node's answer to a send means; gap-free nonces

`*` = pure (import-linter: "pure modules do no I/O"). The rounds that run the steps, and own
their DB transactions, are workers/drain.py and workers/track.py (docs/engine.md).
"""
